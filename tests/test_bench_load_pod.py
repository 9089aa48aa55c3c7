"""The bench's `load` and `pod` sections at smoke-test size: every path runs and reports; no timings
asserted. What is checked is exact: the written model loads with our loader and with transformers
to the same values and counts, and the pod arithmetic is the LLaMA formula. The sections' reports
are checked on tests/test_bench.py's tiny run, which runs them."""

import numpy as np

from experiments.bench import load as bench_load_module
from experiments.bench import pod as bench_pod_module
from experiments.plan.pairings import CONFIGS


def test_the_written_random_model_is_what_transformers_and_our_loader_read(tmp_path):
  import torch
  import transformers

  from model.hf_import import load_model

  widths = bench_load_module.WIDTHS["tiny"]
  n = bench_load_module.write_random_model(tmp_path / "hf", tmp_path / "m.gguf", widths)
  hf = transformers.AutoModelForCausalLM.from_pretrained(str(tmp_path / "hf"), dtype=torch.float32)
  assert n == sum(p.numel() for p in hf.parameters())
  ours = load_model(tmp_path / "hf", with_tokenizer=False)
  gguf = load_model(tmp_path / "m.gguf", with_tokenizer=False)
  want = hf.model.layers[1].mlp.down_proj.weight.detach().numpy().T  # [in, out]
  for lm in (ours, gguf):
    layers = lm.params["params"]
    got = (
      layers["layers"]["mlp"]["down_proj"]["kernel"][1]
      if "layers" in layers
      else layers["layers_1"]["mlp"]["down_proj"]["kernel"]
    )
    np.testing.assert_array_equal(np.asarray(got), want)


def test_pod_arithmetic_is_the_llama_formula():
  w, c = bench_pod_module.arithmetic_bytes(CONFIGS["llama-2-70b"], batch=32, max_len=1024, devices=16)
  assert w == 2 * 68_976_648_192 // 16  # bfloat16 weights of the published 70B over 16 devices
  assert c == 2 * 2 * 80 * 32 * 8 * 1024 * 128 // 16  # keys + values, bf16, [L, B, K, T, D]

"""The bench's `load` and `pod` sections at smoke-test size: every path runs and reports; no timings
asserted. What is checked is exact: the written model loads with our loader and with transformers
to the same values and counts, and the pod arithmetic is the LLaMA formula."""

import numpy as np
import pytest

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


def test_load_section_reports_both_loaders_side_by_side():
  result = {}
  bench_load_module.bench_load("tiny", result)
  assert set(result["load_runs"]) == {"ours_float32", "transformers_float32", "ours_gguf_float32"}
  params = {r["params_gib"] for r in result["load_runs"].values()}
  assert len(params) == 1  # the same model, whichever loader
  for r in result["load_runs"].values():
    assert r["seconds"] > 0 and r["peak_rss_gib"] >= r["load_rss_gib"] >= 0
  assert result["load_rss_over_params"] > 0 and result["load_time_vs_hf"] > 0


def test_pod_arithmetic_is_the_llama_formula():
  w, c = bench_pod_module.arithmetic_bytes(CONFIGS["llama-2-70b"], batch=32, max_len=1024, devices=16)
  assert w == 2 * 68_976_648_192 // 16  # bfloat16 weights of the published 70B over 16 devices
  assert c == 2 * 2 * 80 * 32 * 8 * 1024 * 128 // 16  # keys + values, bf16, [L, B, K, T, D]


def test_pod_section_plans_and_compares():
  result = {}
  bench_pod_module.bench_pod("tiny", result)
  assert result["pod_compile_s"] > 0 and result["pod_plan"]["fits"]
  plan, arith = result["pod_plan"], result["pod_arithmetic"]
  assert plan["weights_gib"] == pytest.approx(arith["weights_gib"], rel=0.05)  # norms replicated
  assert plan["teacher_cache_gib"] == pytest.approx(arith["teacher_cache_gib"], rel=1e-3)  # JSON: 6 places
  assert result["pod_plan_vs_arithmetic"] >= 0
  assert result["pod_replicated_student_gib"] > plan["per_device_gib"] - plan["temporaries_gib"]

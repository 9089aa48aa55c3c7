"""A .gguf file loads wherever a model directory does: tiny llama.cpp-layout Llama and Qwen2 files
written here (Llama's q/k rows permuted as llama.cpp does), checked against the transformers models
they were written from."""

import jax.numpy as jnp
import numpy as np
import pytest
import tiny_models
import torch

from decode.api import DecodeRequest
from decode.host.guided import GuidedDecoder
from model.errors import ModelLoadError
from model.hf_import import load_model
from model.lm import forward

pytest.importorskip("gguf")


@pytest.fixture(scope="module", params=["llama", "qwen2"])  # Llama: q/k permuted in the file; Qwen2: biases
def model_files(request, tmp_path_factory):
  """(torch model, its safetensors directory, {qtype: .gguf path})."""
  d = tmp_path_factory.mktemp(f"gguf_{request.param}")
  # vocab = the tokenizer's (no padding rows): GuidedDecoder masks ids past len(tokenizer), and the GGUF's
  # token list (llama.cpp's rule) covers every row, so padded vocabs would sample from different sets
  torch_model = tiny_models.make_hf_model(
    d / "hf", request.param, seed=5, init_std=0.3, vocab_size=tiny_models.VOCAB
  )
  files = {q: tiny_models.write_gguf(d / f"tiny-{q}.gguf", torch_model, q) for q in ("F32", "Q8_0")}
  return torch_model, d / "hf", files


TOKENS = np.random.default_rng(0).integers(4, tiny_models.VOCAB, size=(2, 20))


def _logits(lm, tokens=TOKENS):
  B, T = tokens.shape
  zeros = jnp.zeros((B,), jnp.int32)
  logits, _ = forward(lm.cfg, lm.params, jnp.asarray(tokens), zeros, zeros + T, lm.init_cache(B, T))
  return np.asarray(logits)


def _reference(torch_model, tokens=TOKENS):
  with torch.no_grad():
    return torch_model(torch.tensor(tokens)).logits.numpy()


@pytest.mark.parametrize("scan_layers", [True, False])
def test_f32_logits_match_transformers(model_files, scan_layers):
  torch_model, _, files = model_files
  lm = load_model(files["F32"], scan_layers=scan_layers)
  assert lm.cfg.family == torch_model.config.model_type and lm.cfg.scan_layers == scan_layers
  np.testing.assert_allclose(_logits(lm), _reference(torch_model), atol=2e-4, rtol=2e-4)


def test_q8_0_logits_close_to_transformers(model_files):
  torch_model, _, files = model_files
  ref = _reference(torch_model)
  got = _logits(load_model(files["Q8_0"]))
  assert not np.allclose(got, ref, atol=1e-6)  # really quantised
  np.testing.assert_allclose(got, ref, atol=0.1 * np.abs(ref).max())
  assert (got.argmax(-1) == ref.argmax(-1)).mean() > 0.9


def test_bfloat16_equals_the_directory_model(model_files):
  """dtype applies after dequantising: bf16 params and logits as the safetensors directory loads them."""
  _, hf_dir, files = model_files
  lm = load_model(files["F32"], dtype="bfloat16")
  assert lm.params["params"]["embed_tokens"]["embedding"].dtype == jnp.bfloat16
  np.testing.assert_array_equal(_logits(lm), _logits(load_model(hf_dir, dtype="bfloat16")))


def test_transformers_reads_the_same_file_alike(model_files):
  """transformers' own from_pretrained(gguf_file=...) on the file: the same logits as ours."""
  pytest.importorskip("accelerate")  # transformers needs it to load a GGUF
  import transformers

  _, _, files = model_files
  f = files["F32"]
  hf = transformers.AutoModelForCausalLM.from_pretrained(
    str(f.parent), gguf_file=f.name, dtype=torch.float32, attn_implementation="eager"
  ).eval()
  np.testing.assert_allclose(_logits(load_model(f)), _reference(hf), atol=2e-4, rtol=2e-4)


def test_tokenizer_and_eos(model_files):
  _, _, files = model_files
  lm = load_model(files["F32"])
  assert lm.eos_token_ids == (tiny_models.EOS_ID,)
  assert lm.tokenizer.eos_token_id == tiny_models.EOS_ID and len(lm.tokenizer) == tiny_models.VOCAB
  ids = lm.tokenizer("ab 1", add_special_tokens=False)["input_ids"]
  assert lm.tokenizer.decode(ids) == "ab 1"


def test_greedy_tokens_equal_the_directory_model(model_files):
  """GuidedDecoder on the .gguf and on the safetensors directory: the same greedy tokens."""
  _, hf_dir, files = model_files
  prompts = [list(map(int, TOKENS[0, :7])), list(map(int, TOKENS[1, :4]))]
  rows = {}
  for key, path in (("gguf", files["F32"]), ("dir", hf_dir)):
    rows[key] = [
      r.token_ids
      for r in GuidedDecoder(load_model(path)).generate(DecodeRequest(prompts, "never", max_new_tokens=12))
    ]
  assert rows["gguf"] == rows["dir"] and all(rows["gguf"])


def test_vocab_padded_past_the_tokenizer(tmp_path):
  """Unused tokens fill the GGUF's list up to the embedding's rows (as real padded vocabs do)."""
  torch_model = tiny_models.make_hf_model(tmp_path / "hf", "llama", seed=6)
  lm = load_model(tiny_models.write_gguf(tmp_path / "padded.gguf", torch_model))
  assert lm.cfg.vocab_size == len(lm.tokenizer) == tiny_models.VOCAB + 6
  np.testing.assert_allclose(_logits(lm), _reference(torch_model), atol=2e-4, rtol=2e-4)


def test_missing_file_is_one_clear_error(tmp_path):
  with pytest.raises(ModelLoadError, match="does not exist"):
    load_model(tmp_path / "nope.gguf")


def test_unsupported_architectures_name_the_file_and_the_supported(tmp_path):
  import gguf

  def write(name, arch):
    w = gguf.GGUFWriter(str(tmp_path / name), arch)
    w.add_block_count(1)
    w.add_context_length(8)
    w.add_embedding_length(8)
    w.add_head_count(1)
    w.add_vocab_size(4)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return tmp_path / name

  for name, arch in (
    ("rwkv.gguf", "rwkv6"),
    ("falcon.gguf", "falcon"),
  ):  # transformers / our decoder lacks it
    with pytest.raises(ModelLoadError, match=rf"{name}.*llama, mistral, qwen2"):
      load_model(write(name, arch))
  (tmp_path / "junk.gguf").write_bytes(b"not a gguf file")
  with pytest.raises(ModelLoadError, match="junk.gguf"):
    load_model(tmp_path / "junk.gguf")


def test_a_sweep_takes_a_gguf_student(model_files, tmp_path):
  """A .gguf path works as a sweep student (validated, loaded, identified in the manifest by its file)."""
  import json

  from ml_collections import ConfigDict

  from configs.base import base_config
  from experiments.sweep.run import run_sweep
  from experiments.sweep.store import ResultsStore

  _, _, files = model_files
  c = base_config()
  c.output_dir = str(tmp_path / "out")
  c.task.num_problems = 3
  c.students = [ConfigDict(dict(name="s", path=str(files["F32"]), checkpoint=None))]
  c.policies, c.batch_size, c.max_new_tokens = ("never",), 4, 8
  run_sweep(c, progress=False)
  rows = ResultsStore(tmp_path / "out" / "results.jsonl").rows.values()
  assert len(rows) == 3 and all(r["token_ids"] for r in rows)
  manifest = json.loads((tmp_path / "out" / "manifest.json").read_text())
  assert list(manifest["students"]["s"]) == [files["F32"].name]

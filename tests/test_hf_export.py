"""Export of Flax params to a Hugging Face directory: exact round trip, and transformers agrees."""

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import tiny_models

from model.config import DecoderConfig
from model.hf_export import ExportError, export_hf
from model.hf_export import main as export_main
from model.hf_import import load_config, load_model
from model.lm import forward, init_params, to_layout

TOKENS = np.array([[1, 5, 9, 13, 4, 7, 30, 2], [1, 8, 8, 20, 11, 3, 6, 12]], np.int32)  # [B=2, C=8]


def _cfg(**kw):
  base = dict(
    family="llama",
    vocab_size=tiny_models.VOCAB + 3,
    hidden_size=32,
    intermediate_size=48,
    num_layers=2,
    num_heads=4,
    num_kv_heads=2,
    head_dim=8,
    max_position_embeddings=64,
  )
  base.update(kw)
  return DecoderConfig(**base)


def _logits(cfg, params, tokens=TOKENS):
  B, C = tokens.shape
  z = jnp.zeros((B,), jnp.int32)
  from model.kv_cache import init_cache

  return np.asarray(forward(cfg, params, jnp.asarray(tokens), z, z + C, init_cache(cfg, B, C))[0])


@pytest.fixture(scope="module")
def tok_dir(tmp_path_factory):
  d = tmp_path_factory.mktemp("tok")
  tiny_models.make_tokenizer(d)
  return d


@pytest.mark.parametrize("kw", [{}, {"tie_word_embeddings": True}, {"qkv_bias": True, "o_bias": True}])
def test_round_trip_is_exact(tmp_path, tok_dir, kw):
  cfg = _cfg(**kw)
  params = init_params(cfg, jax.random.key(0))
  export_hf(tmp_path, cfg, params, tokenizer=tok_dir)
  lm = load_model(tmp_path)
  assert lm.cfg == cfg
  assert jax.tree.structure(lm.params) == jax.tree.structure(params)
  for a, b in zip(jax.tree.leaves(lm.params), jax.tree.leaves(params)):
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
  assert lm.tokenizer("ab")["input_ids"] == tiny_models.make_tokenizer(tmp_path / "t")("ab")["input_ids"]


def test_run_options_do_not_block_export(tmp_path, tok_dir):
  """A model loaded unrolled with dense decode (scan_layers=False, decode_block=0) exports the same
  weights: how a model runs is not part of its HF config."""
  cfg = _cfg()
  params = init_params(cfg, jax.random.key(1))
  run_cfg = cfg.replace(scan_layers=False, decode_block=0)
  export_hf(tmp_path, run_cfg, to_layout(params, run_cfg), tokenizer=tok_dir)
  lm = load_model(tmp_path)
  assert lm.cfg == cfg
  for a, b in zip(jax.tree.leaves(lm.params), jax.tree.leaves(params)):
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def test_transformers_loads_export_with_same_logits(tmp_path, tok_dir):
  import torch
  import transformers

  cfg = _cfg()
  params = init_params(cfg, jax.random.key(1))
  params = jax.tree.map(lambda x: x * 5.0 if x.ndim == 2 else x, params)  # non-trivial logits
  export_hf(tmp_path, cfg, params, tokenizer=tok_dir)
  model = transformers.AutoModelForCausalLM.from_pretrained(str(tmp_path), attn_implementation="eager").eval()
  with torch.no_grad():
    ref = model(torch.tensor(TOKENS, dtype=torch.long)).logits.numpy()  # [B, C, V]
  np.testing.assert_allclose(_logits(cfg, params), ref, atol=1e-4, rtol=1e-4)


def test_hf_model_re_exported_unchanged(tmp_path):
  tiny_models.make_hf_model(tmp_path / "src", "qwen2", seed=2)
  lm = load_model(tmp_path / "src")
  _, hf = load_config(tmp_path / "src")
  export_hf(tmp_path / "out", lm.cfg, lm.params, tokenizer=tmp_path / "src", hf_config=hf)
  np.testing.assert_array_equal(
    _logits(lm.cfg, lm.params), _logits(lm.cfg, load_model(tmp_path / "out").params)
  )


def test_bfloat16_storage_halves_size_and_stays_close(tmp_path, tok_dir):
  cfg = _cfg()
  params = init_params(cfg, jax.random.key(2))
  export_hf(tmp_path / "f32", cfg, params, tokenizer=tok_dir)
  (tmp_path / "f32" / "notes.json").write_text("{}")
  assert (
    export_main(["--src", str(tmp_path / "f32"), "--out", str(tmp_path / "bf16"), "--dtype", "bfloat16"]) == 0
  )
  size = lambda d: (d / "model.safetensors").stat().st_size
  assert size(tmp_path / "bf16") < 0.6 * size(tmp_path / "f32")
  assert json.loads((tmp_path / "bf16" / "config.json").read_text())["dtype"] == "bfloat16"
  assert (tmp_path / "bf16" / "notes.json").exists()  # side files travel with the weights
  lm = load_model(tmp_path / "bf16")
  for a, b in zip(jax.tree.leaves(lm.params), jax.tree.leaves(params)):
    np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-2, atol=1e-6)


def test_bad_requests_are_clear_errors(tmp_path):
  cfg = _cfg(qkv_bias=True, o_bias=False)  # llama cannot express q/k/v bias without o bias
  params = init_params(cfg, jax.random.key(0))
  with pytest.raises(ExportError, match="cannot express"):
    export_hf(tmp_path, cfg, params)
  with pytest.raises(ExportError, match="storage dtype"):
    export_hf(tmp_path, _cfg(), params, dtype="int8")

"""The families beyond Llama: export round trips, Phi-3 longrope on both sides of its switch, GPT-2's
unprefixed checkpoints, and the unsupported-architecture error. Forward parity lives in
test_model_parity.py (VARIANTS)."""

import types

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import tiny_models
import torch

from model.config import SUPPORTED_FAMILIES, DecoderConfig
from model.errors import ModelLoadError
from model.hf_export import export_hf
from model.hf_import import load_model
from model.lm import forward

TOKENS = np.random.default_rng(0).integers(4, tiny_models.VOCAB, size=(2, 12))  # [B, T]
LONGROPE = dict(
  rope_scaling={
    "rope_type": "longrope",
    "short_factor": [1.0, 1.3, 2.0, 3.5],
    "long_factor": [1.5, 4.0, 9.0, 20.0],
  },
  original_max_position_embeddings=8,
)
EXPORTED = {
  "gemma": ("gemma", {}),
  "gemma2": ("gemma2", {}),
  "phi3_longrope_partial": (  # rotary over half of head_dim 8: two factors each
    "phi3",
    dict(
      rope_scaling={"rope_type": "longrope", "short_factor": [1.0, 2.0], "long_factor": [3.0, 9.0]},
      original_max_position_embeddings=8,
      partial_rotary_factor=0.5,
      sliding_window=6,
    ),
  ),
  "olmo": ("olmo", dict(clip_qkv=0.5)),
  "olmo2": ("olmo2", {}),
  "gpt2": ("gpt2", {}),
}


def _logits(lm, tokens):
  B, T = tokens.shape
  z = jnp.zeros((B,), jnp.int32)
  return np.asarray(forward(lm.cfg, lm.params, jnp.asarray(tokens), z, z + T, lm.init_cache(B, T))[0])


def _torch_logits(model, tokens):
  with torch.no_grad():
    return model(torch.tensor(tokens)).logits.numpy()


@pytest.mark.parametrize("variant", sorted(EXPORTED))
def test_export_round_trips_and_transformers_agrees(tmp_path, variant):
  """HF dir -> our params -> export (config rebuilt from ours) -> the same params, config and logits."""
  import transformers

  family, overrides = EXPORTED[variant]
  torch_model = tiny_models.make_hf_model(tmp_path / "src", family, seed=4, **overrides)
  lm = load_model(tmp_path / "src")
  export_hf(tmp_path / "out", lm.cfg, lm.params, tokenizer=tmp_path / "src")
  back = load_model(tmp_path / "out")
  assert back.cfg == lm.cfg
  assert jax.tree.structure(back.params) == jax.tree.structure(lm.params)
  for a, b in zip(jax.tree.leaves(back.params), jax.tree.leaves(lm.params)):
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
  reloaded = transformers.AutoModelForCausalLM.from_pretrained(
    str(tmp_path / "out"), attn_implementation="eager"
  )
  np.testing.assert_allclose(
    _torch_logits(reloaded.eval(), TOKENS), _torch_logits(torch_model, TOKENS), atol=1e-5
  )


@pytest.fixture(scope="module")
def longrope(tmp_path_factory):
  d = tmp_path_factory.mktemp("longrope")
  return tiny_models.make_hf_model(d, "phi3", seed=5, **LONGROPE), load_model(d)


def test_longrope_short_sequences_match_transformers(longrope):
  """A sequence no longer than original_max_position_embeddings (8) uses the short factors."""
  torch_model, lm = longrope
  np.testing.assert_allclose(_logits(lm, TOKENS[:, :8]), _torch_logits(torch_model, TOKENS[:, :8]), atol=2e-4)


def test_longrope_crossing_keeps_cached_keys(longrope):
  """Prefill 6 tokens (short factors), then decode past 8 one token at a time: each step uses the
  frequencies of its length and the cache keeps the keys it was written with, which is transformers'
  forward stepped with its cache (not its Phi-3 generate, which recomputes the cache at the switch)."""
  torch_model, lm = longrope
  from transformers import DynamicCache

  tokens = TOKENS[:1]  # [1, 12]
  want = []
  with torch.no_grad():
    cache = DynamicCache(config=torch_model.config)
    want.append(torch_model(torch.tensor(tokens[:, :6]), cache=cache, use_cache=True).logits[0, -1].numpy())
    for p in range(6, 12):
      out = torch_model(
        torch.tensor(tokens[:, p : p + 1]), cache=cache, use_cache=True, position_ids=torch.tensor([[p]])
      )
      want.append(out.logits[0, -1].numpy())
  cache = lm.init_cache(1, 12)
  one = jnp.ones((1,), jnp.int32)
  out, cache = forward(lm.cfg, lm.params, jnp.asarray(tokens[:, :6]), one * 0, one * 6, cache)
  got = [np.asarray(out[0, -1])]
  for p in range(6, 12):
    out, cache = forward(lm.cfg, lm.params, jnp.asarray(tokens[:, p : p + 1]), one * p, one, cache)
    got.append(np.asarray(out[0, -1]))
  np.testing.assert_allclose(np.stack(got), np.stack(want), atol=2e-4, rtol=2e-4)


def test_gpt2_checkpoint_without_transformer_prefix_loads(tmp_path):
  """OpenAI's GPT-2 checkpoints were saved from GPT2Model: 'h.0.attn.c_attn.weight', no 'transformer.'."""
  from safetensors.numpy import load_file, save_file

  torch_model = tiny_models.make_hf_model(tmp_path, "gpt2", seed=6)
  tensors = load_file(str(tmp_path / "model.safetensors"))
  save_file(
    {k.removeprefix("transformer."): v for k, v in tensors.items()}, str(tmp_path / "model.safetensors")
  )
  np.testing.assert_allclose(
    _logits(load_model(tmp_path), TOKENS), _torch_logits(torch_model, TOKENS), atol=2e-4
  )


def test_unsupported_architecture_lists_supported_families():
  with pytest.raises(ModelLoadError, match="unsupported architecture model_type='mpt'") as e:
    DecoderConfig.from_hf(types.SimpleNamespace(model_type="mpt"))
  assert all(f in str(e.value) for f in SUPPORTED_FAMILIES)

"""One-row dots over matvec slices (model/matvec.py): the same products as plain dots, HF's logits at
batch-1 decode, and in the compiled step a batched dot over slices of each weight, never a copy."""

import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import tiny_models
import torch

from model import matvec
from model.config import MATVEC_SLICES_CPU, DecoderConfig
from model.hf_import import load_model
from model.lm import forward

RNG = np.random.default_rng(0)
CFG = DecoderConfig(
  family="llama",
  vocab_size=96,
  hidden_size=32,
  intermediate_size=64,
  num_layers=2,
  num_heads=4,
  num_kv_heads=2,
  head_dim=8,
  max_position_embeddings=64,
)


def _plain_in_out(x, k):
  return jax.lax.dot_general(x, k, (((x.ndim - 1,), (0,)), ((), ())))


def test_dot_in_out_is_the_plain_product():
  k = jnp.asarray(RNG.standard_normal((64, 3, 8)), jnp.float32)  # [in, *out], like a fused kernel
  x = jnp.asarray(RNG.standard_normal((1, 1, 64)), jnp.float32)
  got = matvec.dot_in_out(x, k, 4)
  assert got.shape == (1, 1, 3, 8)
  np.testing.assert_allclose(got, _plain_in_out(x, k), rtol=1e-5, atol=1e-6)
  many = jnp.asarray(RNG.standard_normal((2, 3, 64)), jnp.float32)  # more than one row: a plain dot
  np.testing.assert_array_equal(matvec.dot_in_out(many, k, 4), _plain_in_out(many, k))
  # slices that do not divide `in`, or one slice: the plain dot
  np.testing.assert_array_equal(matvec.dot_in_out(x, k, 3), _plain_in_out(x, k))
  np.testing.assert_array_equal(matvec.dot_in_out(x, k, 1), _plain_in_out(x, k))


def test_dot_out_in_is_the_plain_product():
  table = jnp.asarray(RNG.standard_normal((96, 32)), jnp.float32)  # [V, E]
  x = jnp.asarray(RNG.standard_normal((1, 1, 32)), jnp.float32)
  plain = jax.lax.dot_general(x, table, (((2,), (1,)), ((), ())))  # x @ table.T
  got = matvec.dot_out_in(x, table, 4)
  assert got.shape == (1, 1, 96)
  np.testing.assert_allclose(got, plain, rtol=1e-5, atol=1e-6)
  np.testing.assert_array_equal(matvec.dot_out_in(x, table, 5), plain)  # 5 does not divide 96


def test_auto_slices_and_validation():
  cfg = CFG
  assert jax.device_count() == 1 or cfg.matvec_split == 1  # auto: only on one CPU device
  if jax.device_count() == 1:
    assert cfg.matvec_split == MATVEC_SLICES_CPU
  assert cfg.replace(matvec_slices=1).matvec_split == 1
  for bad in (0, -2, 2.0, True, "4"):
    with pytest.raises(ValueError, match="matvec_slices"):
      _ = cfg.replace(matvec_slices=bad).matvec_split


@pytest.mark.parametrize("family,overrides", [("llama", {"tie_word_embeddings": False}), ("gemma", {})])
def test_batch1_decode_logits_match_transformers(tmp_path, family, overrides):
  """Token by token at batch 1 (every dot one row, over 4 slices; gemma's output layer is its tied
  embedding table), each step's logits are HF's for that position."""
  torch_model = tiny_models.make_hf_model(tmp_path, family, seed=2, **overrides)
  lm = load_model(tmp_path)
  cfg = lm.cfg.replace(matvec_slices=4)
  assert cfg.hidden_size % 4 == 0 and cfg.vocab_size % 4 == 0  # every dot is split
  tokens = RNG.integers(4, tiny_models.VOCAB, size=10).tolist()
  with torch.no_grad():
    ref = torch_model(torch.tensor([tokens])).logits[0].float().numpy()  # [T, V]
  cache = lm.init_cache(1, len(tokens))
  got = []
  for t, tok in enumerate(tokens):
    logits, cache = forward(
      cfg, lm.params, jnp.asarray([[tok]]), jnp.asarray([t], jnp.int32), jnp.ones((1,), jnp.int32), cache
    )
    got.append(np.asarray(logits[0, 0]))
  np.testing.assert_allclose(np.stack(got), ref, atol=2e-5, rtol=2e-5)


def test_one_row_step_runs_batched_dots_over_slices():
  """The compiled batch-1 step: each projection is a dot batched over [4, in / 4, ...] views of its
  weight (tests/test_layer_params.py: and no weight is copied); at batch 2 and with slices=1, none."""
  from model.kv_cache import init_cache
  from model.lm import init_params

  cfg = CFG.replace(layer_params="per_layer")
  params = init_params(cfg, jax.random.key(0))

  def batched_dots(c, batch):
    def step(p, tok, start, cache):
      return forward(c, p, tok, start, jnp.ones_like(start), cache)

    args = (jnp.zeros((batch, 1), jnp.int32), jnp.full((batch,), 3, jnp.int32), init_cache(c, batch, 16))
    hlo = jax.jit(step).lower(params, *args).compile().as_text()
    return re.findall(r"= f32\[4,1,\d+\]\{[^}]*\} dot\(.*lhs_batch_dims=\{0\}", hlo)

  # per layer: qkv, o, gate_up, down, one branch per layer each; plus the output layer
  assert len(batched_dots(cfg.replace(matvec_slices=4), 1)) == 4 * cfg.num_layers + 1
  assert batched_dots(cfg.replace(matvec_slices=1), 1) == []
  assert batched_dots(cfg.replace(matvec_slices=4), 2) == []

"""The scanned program over per-layer params reads every weight in place: no weight is materialised in
the optimised HLO of a decode step (XLA:CPU copies each stacked weight's layer slice before its dot).

Logits of the three layer programs against each other and HF: tests/test_model_parity.py.
"""

import jax
import jax.numpy as jnp
import pytest

from experiments.bench.hlo_probe import weight_copies
from model.config import DecoderConfig
from model.kv_cache import init_cache
from model.lm import forward, init_params, to_layout

CFG = DecoderConfig(
  family="qwen2",
  vocab_size=96,
  hidden_size=64,
  intermediate_size=160,
  num_layers=3,
  num_heads=4,
  num_kv_heads=2,
  head_dim=16,
  max_position_embeddings=64,
  qkv_bias=True,
)


def _decode_step_hlo(cfg: DecoderConfig, params) -> str:
  def step(p, tok, start, cache):
    return forward(cfg, p, tok, start, jnp.ones_like(start), cache)

  args = (jnp.zeros((1, 1), jnp.int32), jnp.full((1,), 5, jnp.int32), init_cache(cfg, 1, 32))
  return jax.jit(step).lower(params, *args).compile().as_text()


def test_auto_layout_is_per_layer_on_cpu_and_validated():
  assert jax.default_backend() == "cpu"
  assert not CFG.stacked_params  # auto on CPU
  assert CFG.replace(layer_params="stacked").stacked_params
  assert not CFG.replace(layer_params="stacked", scan_layers=False).stacked_params  # unrolled: per layer
  with pytest.raises(ValueError, match="layer_params"):
    _ = CFG.replace(layer_params="sliced").stacked_params


def test_per_layer_decode_step_copies_no_weight():
  stacked_cfg = CFG.replace(layer_params="stacked")
  params = init_params(stacked_cfg, jax.random.key(0))
  weight_shapes = {tuple(x.shape[1:]) for x in jax.tree.leaves(params["params"]["layers"]) if x.ndim >= 3}
  per_layer_cfg = CFG.replace(layer_params="per_layer")
  copied = weight_copies(_decode_step_hlo(per_layer_cfg, to_layout(params, per_layer_cfg)), weight_shapes)
  assert copied == []
  # The counter sees the copies where they are: one per block weight (q, k, v, o, gate, up, down).
  stacked = weight_copies(_decode_step_hlo(stacked_cfg, params), weight_shapes)
  assert len(stacked) == 7, stacked

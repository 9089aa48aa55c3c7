"""The scanned program over per-layer params reads every weight in place: no weight is materialised in
the optimised HLO of a decode step (XLA:CPU copies each stacked weight's layer slice before its dot).

Logits of the three layer programs against each other and HF: tests/test_model_parity.py.
"""

import jax
import jax.numpy as jnp
import pytest

from experiments.bench.hlo_probe import block_weight_shapes, weight_copies
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
  fused_cfg = stacked_cfg.replace(fused_projections="fused")
  fused = to_layout(params, fused_cfg)
  weight_shapes = block_weight_shapes(params) | block_weight_shapes(fused)
  assert (64, 2, 4, 16) in weight_shapes and (64, 2, 160) in weight_shapes  # qkv, gate_up
  assert (4, 16, 2, 4, 16) in weight_shapes  # qkv as the slices a one-row dot reads (model/matvec.py)
  for projections in ("fused", "separate"):  # per-layer params fuse by default ("auto")
    for slices in (None, 1):  # one-row dots over matvec slices (auto on one CPU device: 4), plain dots
      per_layer_cfg = CFG.replace(
        layer_params="per_layer", fused_projections=projections, matvec_slices=slices
      )
      copied = weight_copies(_decode_step_hlo(per_layer_cfg, to_layout(params, per_layer_cfg)), weight_shapes)
      assert copied == [], (projections, slices)
  # The counter sees the copies where they are: one per block weight (q, k, v, o, gate, up, down),
  # or per fused one (qkv, o, gate_up, down).
  stacked = weight_copies(_decode_step_hlo(stacked_cfg, params), weight_shapes)
  assert len(stacked) == 7, stacked
  stacked_fused = weight_copies(_decode_step_hlo(fused_cfg, fused), weight_shapes)
  assert len(stacked_fused) == 4, stacked_fused


def test_fused_projections_default_and_validation():
  assert CFG.fuse_projections  # auto on CPU: per-layer params, fused
  assert not CFG.replace(layer_params="stacked").fuse_projections
  assert CFG.replace(layer_params="stacked", fused_projections="fused").fuse_projections
  assert not CFG.replace(fused_projections="separate").fuse_projections
  with pytest.raises(ValueError, match="fused_projections"):
    _ = CFG.replace(fused_projections="qkv").fuse_projections

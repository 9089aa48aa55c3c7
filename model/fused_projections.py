"""Fuse a layer's q/k/v projections into one weight (and gate/up into one), and split them back.

Why: at batch 1 a decode step is a chain of matrix-vector products, and on XLA:CPU each dot costs
more than its bytes (thread-pool dispatch and partitioning per op; the bench student's per-layer
step: 7.0-7.3 ms with 7 dots per layer, 6.1-6.4 ms with 4, the same weights). Fused, a layer runs
qkv, o, gate_up and down.

Layouts (the leading [L] axis of stacked params, if any, is kept):
  attn/qkv_proj/kernel  [E, K, R + 2, D]: kv head k's R = N / K query heads, then its key, then its
                        value (query head n = k * R + r, as HF's repeat_kv pairs them); bias [K, R + 2, D].
  mlp/gate_up_proj/kernel [E, 2, I]: gate, then up; bias [2, I].
Grouping by kv head and by MLP column keeps tensor parallelism as it was: the fused weights split
over `kv_heads` and `mlp` exactly as k/v and gate/up do (configs/sharding_rules.py).

Checkpoints, Hugging Face export and the loaders' tensor names use separate projections; `fuse` and
`split` convert one block tree (model.lm.to_layout applies them).
"""

from __future__ import annotations

import jax.numpy as jnp

from model.config import DecoderConfig


def is_fused(block: dict) -> bool:
  """Whether a block tree (one layer's, or the stacked one) holds fused projections."""
  return "qkv_proj" in block["attn"]


def fuse(block: dict, cfg: DecoderConfig) -> dict:
  """A block tree with separate q/k/v (and gate/up) -> the same weights fused."""
  if is_fused(block):
    return block
  K, D = cfg.num_kv_heads, cfg.head_dim
  attn = dict(block["attn"])
  q, k, v = (attn.pop(name) for name in ("q_proj", "k_proj", "v_proj"))
  qkv = {}
  for leaf in q:  # kernel [..., E, heads * D] -> [..., E, K, heads / K, D]; bias [..., heads * D] likewise
    parts = [x[leaf].reshape(*x[leaf].shape[:-1], K, -1, D) for x in (q, k, v)]
    qkv[leaf] = jnp.concatenate(parts, axis=-2)
  attn["qkv_proj"] = qkv
  out = {**block, "attn": attn}
  if cfg.gated_mlp:
    mlp = dict(block["mlp"])
    gate, up = mlp.pop("gate_proj"), mlp.pop("up_proj")
    mlp["gate_up_proj"] = {leaf: jnp.stack([gate[leaf], up[leaf]], axis=-2) for leaf in gate}
    out["mlp"] = mlp
  return out


def split(block: dict, cfg: DecoderConfig) -> dict:
  """The inverse of `fuse` (a block tree already separate is returned as is)."""
  if not is_fused(block):
    return block
  R = cfg.num_heads // cfg.num_kv_heads
  attn = dict(block["attn"])
  qkv = attn.pop("qkv_proj")
  for name, lo, hi in (("q_proj", 0, R), ("k_proj", R, R + 1), ("v_proj", R + 1, R + 2)):
    attn[name] = {leaf: _flat(x[..., lo:hi, :]) for leaf, x in qkv.items()}
  out = {**block, "attn": attn}
  if "gate_up_proj" in block["mlp"]:
    mlp = dict(block["mlp"])
    gate_up = mlp.pop("gate_up_proj")
    mlp["gate_proj"] = {leaf: x[..., 0, :] for leaf, x in gate_up.items()}
    mlp["up_proj"] = {leaf: x[..., 1, :] for leaf, x in gate_up.items()}
    out["mlp"] = mlp
  return out


def _flat(x):
  """[..., K, heads / K, D] -> [..., heads * D]."""
  return x.reshape(*x.shape[:-3], -1)

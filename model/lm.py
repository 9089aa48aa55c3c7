"""A loaded language model: config, Flax module, params and tokenizer travel together.

There are always two of these (student and teacher), each with its own config and sharding.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from model import fused_projections
from model.config import DecoderConfig
from model.decoder import Decoder
from model.kv_cache import KVCache, init_cache


@dataclasses.dataclass
class LanguageModel:
  cfg: DecoderConfig
  params: Any  # pytree of (possibly sharded) arrays, {'params': ...}
  tokenizer: Any = None  # transformers tokenizer (host side only)
  name: str = "model"
  eos_token_ids: tuple[int, ...] = ()  # from config.json / generation_config.json (e.g. Llama 3's two)

  def init_cache(self, batch_size: int, max_len: int) -> KVCache:
    return init_cache(self.cfg, batch_size, max_len)


def forward(
  cfg: DecoderConfig, params, tokens, start, lengths, cache: KVCache, *, with_logits: bool = True, rows=None
):
  """Pure function for use inside jit: logits [b, C, V] (or hidden [b, C, E]) and the new cache.

  rows [b]: run on these cache rows only (a sub-batch); None: tokens cover all B rows.
  """
  method = Decoder.forward_logits if with_logits else Decoder.__call__
  return Decoder(cfg).apply(params, tokens, start, lengths, cache, rows, method=method)


def _init_fn(cfg: DecoderConfig):
  def init(rng):
    tokens = jnp.zeros((1, 1), jnp.int32)
    zeros = jnp.zeros((1,), jnp.int32)
    return Decoder(cfg).init(
      rng, tokens, zeros, zeros + 1, init_cache(cfg, 1, 1), method=Decoder.forward_logits
    )

  return init


def init_params(cfg: DecoderConfig, rng: jax.Array):
  """Random params (unboxed), e.g. for training from scratch."""
  return nn.unbox(_init_fn(cfg)(rng))


def abstract_params(cfg: DecoderConfig):
  """Shape/dtype tree with logical-axis metadata (nn.LogicallyPartitioned leaves)."""
  return jax.eval_shape(_init_fn(cfg), jax.random.key(0))


def logical_param_axes(cfg: DecoderConfig):
  """PartitionSpecs of logical axis names, same tree as the params."""
  return nn.get_partition_spec(abstract_params(cfg))


def param_shapes(cfg: DecoderConfig):
  """Unboxed ShapeDtypeStruct tree: what a checkpoint must provide."""
  return nn.unbox(abstract_params(cfg))


def unstack_layers(params, num_layers: int):
  """Stacked block params ('layers': [L, ...]) -> one tree per layer ('layers_0', ...), the layout of
  the unrolled program and of the scanned one over per-layer params (DecoderConfig.stacked_params)."""
  tree = dict(params["params"])
  stacked = tree.pop("layers")
  for i in range(num_layers):
    tree[f"layers_{i}"] = jax.tree.map(lambda x, i=i: x[i], stacked)
  return {"params": tree}


def stack_layers(params, cfg: DecoderConfig | None = None):
  """The inverse of unstack_layers (a no-op on params that are already stacked). With cfg, fused
  projections are split first (model/fused_projections.py): the layout checkpoints and export use."""
  tree = dict(params["params"])
  if cfg is not None:
    tree = _map_blocks(tree, lambda block: fused_projections.split(block, cfg))
  names = sorted((k for k in tree if k.startswith("layers_")), key=lambda k: int(k.split("_")[1]))
  if not names:
    return {"params": tree}
  layers = [tree.pop(k) for k in names]
  tree["layers"] = jax.tree.map(lambda *xs: jnp.stack(xs), *layers)
  return {"params": tree}


def to_layout(params, cfg: DecoderConfig):
  """params in any layout -> the one cfg's program reads: stacked or per layer
  (cfg.stacked_params), projections fused or separate (cfg.fuse_projections). Only the conversions
  needed run: fusing per-layer params restacks nothing."""
  tree = params["params"]
  if ("layers" in tree) != cfg.stacked_params:
    stacked = stack_layers(params, cfg)
    params = stacked if cfg.stacked_params else unstack_layers(stacked, cfg.num_layers)
  convert = fused_projections.fuse if cfg.fuse_projections else fused_projections.split
  return {"params": _map_blocks(params["params"], lambda block: convert(block, cfg))}


def _map_blocks(tree: dict, fn) -> dict:
  """fn over each block tree ('layers', or 'layers_i'), one at a time, so a layer's old arrays can
  be freed before the next is converted."""
  out = dict(tree)
  for name in [k for k in tree if k == "layers" or k.startswith("layers_")]:
    out[name] = fn(out[name])
  return out

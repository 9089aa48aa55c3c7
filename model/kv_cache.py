"""Preallocated per-layer key/value cache.

The cache holds max_len positions per row. Which positions are valid is not stored here: callers
keep a per-row "seen up to" pointer and the attention mask is causal in absolute positions, so
truncating or rolling back a row is only a pointer move.
"""

from __future__ import annotations

import flax.struct
import jax
import jax.numpy as jnp

from model.config import DecoderConfig

# Logical axis names of one cache array (see configs/sharding_rules.py).
# Layout [L, B, K, S, D]: one array per keys/values with the layers stacked, as the scanned layer
# body reads and writes layer l in place; attention contracts over D with (B, K) as batch dims, so
# the decode step reads the cache without a per-step transpose of the whole cache.
CACHE_AXES = ("layers", "batch", "kv_heads", "length", "head_dim")


@flax.struct.dataclass
class KVCache:
  keys: jax.Array  # [L, B, K, S, D]
  values: jax.Array  # [L, B, K, S, D]

  @property
  def max_len(self) -> int:
    return self.keys.shape[3]

  @property
  def batch_size(self) -> int:
    return self.keys.shape[1]

  def take_rows(self, idx) -> KVCache:
    """Rows idx [b] of every layer: a [L, b, K, S, D] copy."""
    return KVCache(keys=self.keys[:, idx], values=self.values[:, idx])


def cache_shape(cfg: DecoderConfig, batch_size: int, max_len: int) -> tuple[int, int, int, int, int]:
  """Shape of the keys (or values) of all layers: [L, B, K, S, D]."""
  return (cfg.num_layers, batch_size, cfg.num_kv_heads, max_len, cfg.head_dim)


def init_cache(cfg: DecoderConfig, batch_size: int, max_len: int, sharding=None) -> KVCache:
  """Zeros, created in place on `sharding` (a NamedSharding of one [L, B, K, S, D] array) if given."""
  shape = cache_shape(cfg, batch_size, max_len)

  def zeros():
    return jnp.zeros(shape, cfg.jnp_dtype, device=sharding)

  return KVCache(keys=zeros(), values=zeros())


def write_chunk(
  cache_arr: jax.Array,
  new: jax.Array,
  layer: jax.Array,
  start: jax.Array,
  lengths: jax.Array,
  rows: jax.Array | None = None,
) -> jax.Array:
  """Writes new [b, K, C, D] into layer `layer` of cache [L, B, K, S, D] at positions start[i] + c
  for c < lengths[i].

  rows [b]: the cache row of each new row (default: new row i is cache row i, b == B). Positions
  past a row's length or past the cache end are dropped (never clamped, which would silently
  overwrite valid history). A scatter into the whole array, so inside a loop it updates in place.
  """
  b, K, C, _ = new.shape
  c = jnp.arange(C)[None, :]  # [1, C]
  pos = jnp.where(c < lengths[:, None], start[:, None] + c, cache_arr.shape[3])  # [b, C]
  rows = (jnp.arange(b) if rows is None else rows)[:, None, None]
  heads = jnp.arange(K)[None, :, None]
  return cache_arr.at[layer, rows, heads, pos[:, None, :]].set(new.astype(cache_arr.dtype), mode="drop")

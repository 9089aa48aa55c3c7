"""Where the loop's arrays live on a mesh: rows over 'data', each cache by its own model's rules.

Without a mesh everything stays on the default device and these are identities.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import NamedSharding, PartitionSpec

from model.kv_cache import CACHE_AXES, KVCache, cache_shape
from model.lm import LanguageModel
from model.sharding import array_sharding


def row_sharding(mesh) -> NamedSharding:
  """[B, ...] arrays split over the 'data' axis (replicated if the mesh has none)."""
  return NamedSharding(mesh, PartitionSpec("data" if "data" in mesh.shape else None))


def place_rows(tree, batch_size: int, mesh=None):
  """Host arrays -> device arrays: [B, ...] leaves over 'data', the rest (vocab masks) replicated."""
  if mesh is None:
    return jax.tree.map(jnp.asarray, tree)
  rows, replicated = row_sharding(mesh), NamedSharding(mesh, PartitionSpec())
  split = batch_size % mesh.shape.get("data", 1) == 0  # a batch of 1 (a shared prefix) stays whole

  def put(x):
    x = np.asarray(x)
    return jax.device_put(x, rows if split and x.ndim and x.shape[0] == batch_size else replicated)

  return jax.tree.map(put, tree)


def cache_sharding(
  lm: LanguageModel, batch_size: int, max_len: int, mesh=None, rules=()
) -> NamedSharding | None:
  """Layout of one [L, B, K, T, D] cache array of `lm`: rows over 'data', kv heads per its rules."""
  if mesh is None:
    return None
  return array_sharding(CACHE_AXES, cache_shape(lm.cfg, batch_size, max_len), mesh, rules)


def put_cache(cache: KVCache | None, sharding) -> KVCache | None:
  """A given cache on the layout the loop expects, so a cached call runs the same executable."""
  return cache if sharding is None or cache is None else jax.device_put(cache, sharding)


def teacher_row_buckets(batch_size: int, sub_batches: int, mesh=None) -> tuple[int, ...]:
  """B/2, B/4, ... (`sub_batches` halvings): sub-batches for the teacher's forwards.

  Off when rows are split over devices: a sub-batch would gather cache rows across devices, and
  accelerators, memory-bound at these batch sizes, gain little from fewer rows anyway.
  """
  if mesh is not None and mesh.shape.get("data", 1) > 1:
    return ()
  return tuple(sorted({max(1, batch_size >> i) for i in range(1, sub_batches + 1)} - {batch_size}))

"""The arithmetic of a plan: bytes per device of each model's weights and KV cache, and a roofline.

Placement comes from model.sharding.partition_spec with the mesh's axis sizes alone, the function
the loaders and the decoder place real arrays with, so a plan needs no devices and no weights.
Every split is even (partition_spec only splits a dim its axes divide), so all devices hold the
same bytes and one device's count is the largest device's.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from typing import Mapping

import jax
import numpy as np
from jax.sharding import PartitionSpec

from model.config import DecoderConfig
from model.kv_cache import CACHE_AXES, cache_shape
from model.lm import logical_param_axes, param_shapes
from model.sharding import Rules, partition_spec

GIB = 2**30


def shard_elements(shape, spec: PartitionSpec, axis_sizes: Mapping[str, int]) -> int:
  """Elements one device holds of an array of `shape` split by `spec`."""
  n = 1
  for i, dim in enumerate(shape):
    n *= dim // math.prod(axis_sizes[a] for a in _names(spec[i] if i < len(spec) else None))
  return n


@dataclasses.dataclass(frozen=True)
class ModelMemory:
  """One model on one device: its weights and its KV cache (keys + values), in bytes."""

  params: int  # parameters of the whole model
  weight_bytes: int  # per device
  cache_bytes: int  # per device, keys + values [L, B, K, T, D] each
  cache_spec: PartitionSpec  # how one cache array is split

  @property
  def step_bytes(self) -> int:
    """What one decode step of this model reads on a device at the buffer's end: weights + every
    cache position (a step at position t reads t / T of the cache)."""
    return self.weight_bytes + self.cache_bytes


@functools.lru_cache(maxsize=8)
def param_leaves(cfg: DecoderConfig) -> tuple[tuple[tuple, tuple[int, ...], int], ...]:
  """(logical axes, shape, bytes per element) of every param (abstract: jax.eval_shape), once per config."""
  is_spec = lambda x: isinstance(x, PartitionSpec)  # noqa: E731
  specs = jax.tree.leaves(logical_param_axes(cfg), is_leaf=is_spec)
  leaves = jax.tree.leaves(param_shapes(cfg))
  return tuple((tuple(s), tuple(x.shape), np.dtype(x.dtype).itemsize) for s, x in zip(specs, leaves))


def model_memory(
  cfg: DecoderConfig, rules: Rules, axis_sizes: Mapping[str, int], batch: int, max_len: int
) -> ModelMemory:
  """Bytes per device of cfg's params (placed by `rules`) and of its cache at batch x max_len."""
  params = weight_bytes = 0
  for logical, shape, itemsize in param_leaves(cfg):
    placed = partition_spec(logical, shape, axis_sizes, rules)
    params += math.prod(shape)
    weight_bytes += shard_elements(shape, placed, axis_sizes) * itemsize
  shape = cache_shape(cfg, batch, max_len)  # [L, B, K, T, D]
  cache_spec = partition_spec(CACHE_AXES, shape, axis_sizes, rules)
  itemsize = np.dtype(cfg.jnp_dtype).itemsize
  cache_bytes = 2 * shard_elements(shape, cache_spec, axis_sizes) * itemsize
  return ModelMemory(params, weight_bytes, cache_bytes, cache_spec)


def _names(axes) -> tuple[str, ...]:
  return () if axes is None else (axes,) if isinstance(axes, str) else tuple(axes)


def kv_heads_note(
  cfg: DecoderConfig, memory: ModelMemory, axis_sizes: Mapping[str, int], rules: Rules
) -> str:
  """Where a cache's kv-head mesh axes went when they do not divide its kv heads ('' if they do)."""
  targets = tuple(t for t in _names(dict(rules).get("kv_heads")) if t in axis_sizes)
  size = math.prod(axis_sizes[t] for t in targets)
  if size <= 1 or cfg.num_kv_heads % size == 0:
    return ""
  spec = tuple(memory.cache_spec) + (None,) * len(CACHE_AXES)
  moved = [name for name, axes in zip(CACHE_AXES, spec) if set(_names(axes)) & set(targets)]
  where = f"{moved[0]} split instead" if moved else "replicated along it"
  return f"{cfg.num_kv_heads} kv heads do not divide {'x'.join(targets)}={size}: {where}"


def step_ms(step_bytes: int, gbps: float) -> float:
  """Roofline time of a memory-bound step: bytes over the memory bandwidth (GB/s), in ms."""
  return step_bytes / (gbps * 1e9) * 1e3

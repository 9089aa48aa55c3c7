"""Mesh construction and logical-axis -> mesh placement for params and caches.

Rules tables live in configs (configs/sharding_rules.py) so student and teacher can be placed
differently (e.g. teacher tensor-parallel over 'model', student replicated).
"""

from __future__ import annotations

from typing import Any, Sequence

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from model.errors import UserError
from model.kv_cache import CACHE_AXES, KVCache

Rules = Sequence[tuple[str, Any]]


class MeshError(UserError):
  """A mesh shape that does not fit the available devices."""


def make_mesh(shape: dict[str, int] | Sequence[tuple[str, int]], devices=None) -> Mesh:
  """Mesh over all (global) devices; at most one axis may be -1 (= whatever is left)."""
  items = list(shape.items()) if isinstance(shape, dict) else list(shape)
  devices = np.asarray(devices if devices is not None else jax.devices())
  n = devices.size
  sizes = [s for _, s in items]
  if sizes.count(-1) > 1:
    raise MeshError(f"mesh {dict(items)}: at most one axis may be -1")
  known = int(np.prod([s for s in sizes if s != -1])) if sizes else 1
  if any(s == 0 or s < -1 for s in sizes):
    raise MeshError(f"mesh {dict(items)}: axis sizes must be positive or -1")
  if -1 in sizes:
    if n % known:
      raise MeshError(f"mesh {dict(items)} does not fit {n} devices: {n} is not divisible by {known}")
    sizes = [n // known if s == -1 else s for s in sizes]
  if int(np.prod(sizes)) != n:
    raise MeshError(
      f"mesh {dict(items)} needs {int(np.prod(sizes))} devices but {n} are available; "
      "change the axis sizes or set one of them to -1"
    )
  return Mesh(devices.reshape(sizes), tuple(name for name, _ in items))


def _mesh_axes(
  logical: Sequence[str | None], shape: Sequence[int], mesh: Mesh, rules: Rules
) -> PartitionSpec:
  """Maps logical names to mesh axes; a dim that the mesh axis does not divide stays replicated."""
  table = dict(rules)
  used: set[str] = set()
  out = []
  for name, dim in zip(logical, shape):
    target = table.get(name) if name is not None else None
    targets = (target,) if isinstance(target, str) else tuple(target or ())
    targets = tuple(t for t in targets if t in mesh.shape and t not in used)
    size = int(np.prod([mesh.shape[t] for t in targets])) if targets else 1
    if not targets or dim % size:
      out.append(None)
      continue
    used.update(targets)
    out.append(targets[0] if len(targets) == 1 else targets)
  return PartitionSpec(*out)


def param_shardings(logical_axes, shapes, mesh: Mesh, rules: Rules):
  """NamedSharding tree for params given their logical PartitionSpecs and shape tree."""

  def one(spec, shape):
    return NamedSharding(mesh, _mesh_axes(tuple(spec), shape.shape, mesh, rules))

  return jax.tree.map(one, logical_axes, shapes, is_leaf=lambda x: isinstance(x, PartitionSpec))


def array_sharding(
  logical: Sequence[str | None], shape: Sequence[int], mesh: Mesh, rules: Rules
) -> NamedSharding:
  return NamedSharding(mesh, _mesh_axes(logical, shape, mesh, rules))


def cache_sharding(cache: KVCache, mesh: Mesh, rules: Rules) -> KVCache:
  """Shardings for a cache laid out [B, K, S, D], consistent with the model's kv_heads rule."""
  return jax.tree.map(lambda a: array_sharding(CACHE_AXES, a.shape, mesh, rules), cache)

"""Mesh construction and logical-axis -> mesh placement for params and caches.

Rules tables live in configs (configs/sharding_rules.py) so student and teacher can be placed
differently (e.g. teacher tensor-parallel over 'model', student replicated). A dim that its mesh
axis does not divide is never an error: the axis moves to a dim of the same array it divides
(FALLBACKS: a cache's head_dim, then its length, where kv heads do not divide), or else that array
is replicated along it. `partition_spec` needs only the axis sizes, so a plan
(python -m experiments.plan) can place arrays for a mesh it does not have.
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from model.errors import UserError
from model.kv_cache import CACHE_AXES, KVCache

Rules = Sequence[tuple[str, Any]]

# Where a mesh axis goes when the dim its rule names cannot take it (the axis size does not divide
# the dim): the first of these dims of the same array that it divides and that holds no mesh axis
# yet. LLaMA-2-70B's 8 kv heads over model=16 put the cache's head_dim (128) over 'model' rather
# than replicate the cache 16 ways (~10 GiB per device at B=32, T=1024 in bfloat16). head_dim
# before length: a decode step reads the cache in blocks along length (dynamic slices, which XLA
# gathers across devices: +15 GiB of temporaries per device in that 70B program, against 0.3 GiB
# with head_dim split) and writes it at traced positions; a split head_dim costs one all-reduce of
# the [B, K, G, C, S] attention logits per layer instead.
FALLBACKS: dict[str, tuple[str, ...]] = {"kv_heads": ("head_dim", "length")}


class MeshError(UserError):
  """A mesh shape that does not fit the available devices."""


def mesh_sizes(shape: dict[str, int] | Sequence[tuple[str, int]], n: int) -> dict[str, int]:
  """Axis name -> size for `n` devices; at most one axis may be -1 (= whatever is left)."""
  items = list(shape.items()) if isinstance(shape, dict) else list(shape)
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
  return {name: size for (name, _), size in zip(items, sizes)}


def make_mesh(shape: dict[str, int] | Sequence[tuple[str, int]], devices=None) -> Mesh:
  """Mesh over all (global) devices; at most one axis may be -1 (= whatever is left)."""
  devices = np.asarray(devices if devices is not None else jax.devices())
  sizes = mesh_sizes(shape, devices.size)
  return Mesh(devices.reshape(list(sizes.values())), tuple(sizes))


def partition_spec(
  logical: Sequence[str | None], shape: Sequence[int], axis_sizes: Mapping[str, int], rules: Rules
) -> PartitionSpec:
  """Logical names -> mesh axes, given only the mesh's axis sizes (a Mesh's `.shape`, or a plan's).

  A dim that its mesh axes do not divide stays whole; those axes go to the dim FALLBACKS names for
  it where the array has one they divide, else the array is replicated along them.
  """
  table = dict(rules)
  used: set[str] = set()
  out: list = [None] * len(shape)
  homeless: list[tuple[str, tuple[str, ...], int]] = []  # (logical name, its mesh axes, their size)
  for i, (name, dim) in enumerate(zip(logical, shape)):
    target = table.get(name) if name is not None else None
    targets = (target,) if isinstance(target, str) else tuple(target or ())
    targets = tuple(t for t in targets if t in axis_sizes and t not in used)
    if not targets:
      continue
    size = int(np.prod([axis_sizes[t] for t in targets]))
    if dim % size:
      homeless.append((name, targets, size))
      continue
    used.update(targets)
    out[i] = _axes(targets)
  for name, targets, size in homeless:
    if used & set(targets):
      continue
    for other in FALLBACKS.get(name, ()):
      i = next((j for j, n in enumerate(logical) if n == other), None)
      if i is not None and out[i] is None and not shape[i] % size:
        used.update(targets)
        out[i] = _axes(targets)
        break
  return PartitionSpec(*out)


def _axes(targets: tuple[str, ...]):
  return targets[0] if len(targets) == 1 else targets


def param_shardings(logical_axes, shapes, mesh: Mesh, rules: Rules):
  """NamedSharding tree for params given their logical PartitionSpecs and shape tree."""

  def one(spec, shape):
    return array_sharding(tuple(spec), shape.shape, mesh, rules)

  return jax.tree.map(one, logical_axes, shapes, is_leaf=lambda x: isinstance(x, PartitionSpec))


def array_sharding(
  logical: Sequence[str | None], shape: Sequence[int], mesh: Mesh, rules: Rules
) -> NamedSharding:
  return NamedSharding(mesh, partition_spec(logical, shape, dict(mesh.shape), rules))


def cache_sharding(cache: KVCache, mesh: Mesh, rules: Rules) -> KVCache:
  """Shardings for a cache laid out [L, B, K, S, D], consistent with the model's kv_heads rule."""
  return jax.tree.map(lambda a: array_sharding(CACHE_AXES, a.shape, mesh, rules), cache)

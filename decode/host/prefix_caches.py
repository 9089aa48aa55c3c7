"""Caches that hold rows' prompt + prefix, and the rules for starting a later call from them.

Fork mode prefills each problem's prompt + student run once (`GuidedDecoder.prefill`) and starts
every timing's row from it (`generate(..., caches=caches.rows(idx, B))`), so neither model re-reads
a prefix a cache already holds.

Ownership: caches belong to the decoder that made them (its models' params). A `generate` call
consumes (donates) the caches it is given; `rows` makes the copy it needs, so one prefill serves any
number of calls, at the price of one more copy of both caches' rows in memory while they live.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np

from decode.core.loop import jitted_prefill
from decode.core.state import LoopCaches, LoopInputs, LoopModel
from decode.errors import DecodeInputError
from decode.host.placement import place_rows, put_cache
from model.kv_cache import KVCache, init_cache


@dataclasses.dataclass
class PrefixCaches:
  student: KVCache  # [L, B, K, T, D]
  teacher: KVCache | None
  tokens: list[list[int]]  # per row: the ids the caches hold (positions < len - 1 are cached)
  owner: object = None  # the identity token of the GuidedDecoder that made them
  copy: bool = False  # made by `rows` for one call (generate copies anything else first)
  consumed: bool = False  # donated to a generate call: its arrays are gone

  def rows(self, idx: Sequence[int], batch_size: int | None = None) -> PrefixCaches:
    """A copy of rows idx (padded with copies of idx[0] to batch_size), for one generate call."""
    idx = list(idx)
    if self.consumed:
      raise DecodeInputError(
        "these caches were consumed by a generate call; take rows of the prefill's caches "
        "(PrefixCaches.rows) for each call instead"
      )
    if not idx:
      raise DecodeInputError("PrefixCaches.rows needs at least one row index")
    if min(idx) < 0 or max(idx) >= len(self.tokens):
      raise DecodeInputError(f"cache rows {idx} out of range for {len(self.tokens)} cached rows")
    B = batch_size or len(idx)
    if B < len(idx):
      raise DecodeInputError(f"batch_size={B} is smaller than the {len(idx)} rows asked for")
    full = np.asarray(idx + [idx[0]] * (B - len(idx)), np.int32)

    def take(c):
      return None if c is None else c.take_rows(full)

    return PrefixCaches(
      student=take(self.student),
      teacher=take(self.teacher),
      tokens=[self.tokens[i] for i in idx],
      owner=self.owner,
      copy=True,
    )

  def for_call(self, owner: object) -> PrefixCaches:
    """The caches a call may donate: checks ownership; copies if these are the prefill's own."""
    if self.consumed or self.owner is not owner:
      why = (
        "consumed by an earlier generate call"
        if self.consumed
        else "made by another GuidedDecoder (other params)"
      )
      raise DecodeInputError(
        f"these caches were {why}; pass rows of this decoder's prefill, PrefixCaches.rows(idx, batch_size), "
        "to each call"
      )
    return self if self.copy else self.rows(range(len(self.tokens)), self.student.batch_size)


def start_from(
  inp: LoopInputs, caches: PrefixCaches, T: int, B: int, n: int, has_teacher: bool
) -> LoopInputs:
  """Checks that caches fit this call and hold a start of each row; sets how much each row reuses."""
  shape = (caches.student.batch_size, caches.student.max_len)
  if shape != (B, T):
    raise DecodeInputError(
      f"caches have {shape[0]} rows of {shape[1]} positions but this call needs {B} x {T}; "
      "use PrefixCaches.rows(idx, batch_size) and the same max_len as the prefill"
    )
  if (caches.teacher is None) == has_teacher or len(caches.tokens) != n:
    raise DecodeInputError(
      f"caches hold {len(caches.tokens)} rows {'without' if caches.teacher is None else 'with'} a teacher "
      f"cache; this call has {n} rows {'with' if has_teacher else 'without'} a teacher"
    )
  seen = np.zeros((B,), np.int32)
  for i in range(n):
    row, held = inp.prompts.tokens[i, : inp.prompts.lengths[i]].tolist(), caches.tokens[i]
    k = min(len(held), len(row)) - 1  # positions the caches hold that this row can use
    if row[:k] != held[:k]:
      raise DecodeInputError(
        f"row {i}: the given caches hold other tokens than its prompt + prefix; "
        "pass the cache rows prefilled from this row's problem"
      )
    seen[i] = k
  start = inp.cache_start
  return inp.replace(
    cache_start=start.replace(student_seen=seen, teacher_seen=seen if has_teacher else start.teacher_seen)
  )


@dataclasses.dataclass
class SharedPrefix:
  """Both models' caches of a token prefix that every row of a call starts with, held at batch 1.

  Few-shot prompts share most of their tokens (the exemplars); a call tiles these caches to its B
  rows and prefills only each row's own suffix, and the teacher's catch-up starts after the prefix
  too. Memory: one row's cache per model (on a mesh, replicated over 'data'), plus the tiled copy
  that a call starts from in place of zeros.
  """

  tokens: list[int]  # the shared prefix; the caches hold exactly these positions
  student: KVCache  # [L, 1, K, T, D]
  teacher: KVCache | None
  owner: object  # the identity token of the GuidedDecoder that made it (its models' params)

  @property
  def max_len(self) -> int:
    return self.student.max_len

  def check(self, prompts: Sequence[Sequence[int]], T: int, owner: object) -> None:
    """Every prompt must start with the prefix and go past it; the call's buffer length must match."""
    if owner is not self.owner:
      raise DecodeInputError("this shared prefix was made by another GuidedDecoder (other params)")
    if T != self.max_len:
      raise DecodeInputError(f"the shared prefix was prefilled for max_len={self.max_len}, this call has {T}")
    n = len(self.tokens)
    for i, p in enumerate(prompts):
      if len(p) <= n or list(p[:n]) != self.tokens:
        raise DecodeInputError(
          f"prompt {i} does not start with the shared prefix of {n} tokens (or is not longer than it); "
          "build the prefix from these prompts with GuidedDecoder.shared_prefix"
        )


def common_prefix(prompts: Sequence[Sequence[int]]) -> list[int]:
  """The longest token prefix of all prompts that leaves each prompt's last token out (the loop feeds it)."""
  shared = os.path.commonprefix([list(p) for p in prompts])
  return list(shared[: max(0, min(len(p) for p in prompts) - 1)])


def tile_rows(cache: KVCache, batch_size: int, sharding) -> KVCache:
  """[L, 1, K, T, D] -> a [L, B, K, T, D] copy on the loop's layout: the caches a call starts from."""

  def tile(x):
    out = jnp.broadcast_to(x, x.shape[:1] + (batch_size,) + x.shape[2:])
    return jax.device_put(out, sharding) if sharding is not None else jnp.array(out)

  return jax.tree.map(tile, cache)


def prefill_shared_prefix(
  tokens: list[int],
  student: LoopModel,
  teacher: LoopModel | None,
  max_len: int,
  mesh,
  chunk: int,
  owner: object,
) -> SharedPrefix:
  """Both models' caches of `tokens` at batch 1 (LoopModels placed for batch 1), in `chunk`-token forwards."""
  ids = np.zeros((1, max_len), np.int32)
  ids[0, : len(tokens)] = tokens
  ids, target = place_rows((ids, np.asarray([len(tokens)], np.int32)), 1, mesh)

  def prefill(model: LoopModel | None) -> KVCache | None:
    if model is None:
      return None
    cache = init_cache(model.cfg, 1, max_len, sharding=model.cache_sharding)
    return jitted_prefill(model, ids, cache, target, chunk)

  return SharedPrefix(tokens=list(tokens), student=prefill(student), teacher=prefill(teacher), owner=owner)


def pinned(model: LoopModel, cache: KVCache) -> KVCache:
  """Without a mesh, the cache committed to the default device: fresh zeros and the rows of an earlier
  call's caches then reach the loop alike (jit keys its executables on whether arguments are
  committed; params loaded onto a device are, and so are an earlier call's outputs)."""
  return cache if model.cache_sharding is not None else jax.device_put(cache, jax.devices()[0])


def starting_caches(
  student: LoopModel,
  teacher: LoopModel | None,
  B: int,
  T: int,
  caches: PrefixCaches | None,
  shared: SharedPrefix | None,
) -> tuple[LoopCaches, np.ndarray | None]:
  """The caches a call starts from, on the layout the loop expects (so every call runs one executable):
  a tile of the shared prefix (and how many positions each row then holds), the given fork caches,
  or zeros."""

  def each(fn):
    return LoopCaches(
      student=pinned(student, fn(student, "student")),
      teacher=pinned(teacher, fn(teacher, "teacher")) if teacher else None,
    )

  if shared is not None:
    held = np.full((B,), len(shared.tokens), np.int32)
    return each(lambda m, who: tile_rows(getattr(shared, who), B, m.cache_sharding)), held
  if caches is not None:
    return each(lambda m, who: put_cache(getattr(caches, who), m.cache_sharding)), None
  return each(lambda m, who: init_cache(m.cfg, B, T, sharding=m.cache_sharding)), None

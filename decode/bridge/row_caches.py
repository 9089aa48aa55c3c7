"""Where a bridge row keeps a model's KV cache between its loop calls, and how a call starts from them.

The text bridge decodes a row in several loop calls (one per round), for the student and for an
in-process teacher. Each call's final cache holds its rows (`GuidedDecoder.generate_keeping_caches`);
a row's next call starts from its own row of it and reads only the tokens the cache does not hold.
What a row may reuse is decided from tokens alone: the longest common prefix of what the cache
holds and what the row now is, so a row cut back (a trigger's cut), a teacher whose text
re-tokenises differently in context, or a cache from an earlier call all stay exact: the loop
recomputes every position past that prefix.
"""

from __future__ import annotations

import dataclasses
from typing import Sequence

import jax.numpy as jnp
import numpy as np

from decode.host.prefix_caches import PrefixCaches
from model.kv_cache import KVCache

NO_TOKEN = -1  # a token no row holds: what a cache row that a call cannot use says it holds


@dataclasses.dataclass(frozen=True)
class CachedRow:
  """Row `slot` of a loop call's final caches (shared by that call's rows; never donated)."""

  caches: PrefixCaches
  slot: int

  @property
  def tokens(self) -> list[int]:
    return self.caches.tokens[self.slot]


@dataclasses.dataclass(eq=False)
class RowCache:
  """A row's cache of one model between its calls: None until its first call. `maker`: the decoder
  whose call made it (a call of another decoder cannot start from it: other params)."""

  held: CachedRow | None = None
  maker: object = None

  def keep(self, row: CachedRow, maker: object) -> None:
    self.held, self.maker = row, maker


def reusable(held: Sequence[int], row: Sequence[int]) -> int:
  """Positions of `row` a cache holding `held` can give: their common prefix, less the cache's last
  token (never fed), less the row's last token (the loop feeds it)."""
  n = min(len(held) - 1, len(row) - 1)
  i = 0
  while i < n and held[i] == row[i]:
    i += 1
  return max(i, 0)


def fit_length(cache: KVCache, max_len: int) -> KVCache:
  """The cache with `max_len` positions: cut (positions past a call's buffer are never read) or
  padded with zeros."""
  T = cache.max_len
  if T == max_len:
    return cache
  if T > max_len:
    return KVCache(keys=cache.keys[:, :, :, :max_len], values=cache.values[:, :, :, :max_len])
  pad = [(0, 0)] * 3 + [(0, max_len - T), (0, 0)]
  return KVCache(keys=jnp.pad(cache.keys, pad), values=jnp.pad(cache.values, pad))


def starting_rows(
  held: Sequence[CachedRow | None], rows: Sequence[Sequence[int]], batch_size: int, max_len: int
) -> tuple[PrefixCaches | None, list[int]]:
  """The caches a call on `rows` (each row's prompt + prefix, in the call's order) starts from, and
  how many positions of each it reuses; (None, zeros) when no row holds a cache.

  A row without one (or with nothing reusable) gets another row's cache data that claims to hold
  nothing, so the loop prefills it whole; rows past len(rows) pad the batch."""
  have = [(h, reusable(h.tokens, r)) for h, r in zip(held, rows) if h is not None]
  if not have:
    return None, [0] * len(rows)
  filler = have[0][0]
  picks, tokens, reused = [], [], []
  for h, r in zip(held, rows):
    n = reusable(h.tokens, r) if h is not None else 0
    picks.append(h if h is not None else filler)
    tokens.append(list(r[:n]) + [NO_TOKEN])  # start_from reads: positions < n are this row's
    reused.append(n)
  picks += [filler] * (batch_size - len(picks))
  student = _gather([(p.caches.student, p.slot) for p in picks], max_len)
  owner = filler.caches.owner
  return PrefixCaches(student=student, teacher=None, tokens=tokens, owner=owner, copy=True), reused


def _gather(picks: list[tuple[KVCache, int]], max_len: int) -> KVCache:
  """Rows `slot` of each cache, in order, as one [L, B, K, max_len, D] cache (a copy)."""
  sources: dict[int, tuple[KVCache, list[int]]] = {}
  for cache, slot in picks:
    sources.setdefault(id(cache), (cache, []))[1].append(slot)
  if len(sources) == 1:
    ((cache, slots),) = sources.values()
    return fit_length(cache.take_rows(np.asarray(slots, np.int32)), max_len)
  parts = [fit_length(cache.take_rows(np.asarray([slot], np.int32)), max_len) for cache, slot in picks]
  return KVCache(
    keys=jnp.concatenate([p.keys for p in parts], axis=1),
    values=jnp.concatenate([p.values for p in parts], axis=1),
  )


@dataclasses.dataclass
class ForkCaches(PrefixCaches):
  """The bridge's prefill (fork mode): the student's caches of each row's prompt + prefix, and one
  holder per row for an in-process teacher's cache of the same text in its tokens (empty: none
  made yet, or a teacher that keeps none). `rows` passes the same holders on, so the teacher's
  cache of a problem, made when its first forked row needs it, serves every later timing."""

  teacher_rows: list[RowCache] = dataclasses.field(default_factory=list)

  def rows(self, idx: Sequence[int], batch_size: int | None = None) -> ForkCaches:
    out = super().rows(idx, batch_size)
    fields = {f.name: getattr(out, f.name) for f in dataclasses.fields(PrefixCaches)}
    return ForkCaches(**fields, teacher_rows=[self.teacher_rows[i] for i in idx] if self.teacher_rows else [])

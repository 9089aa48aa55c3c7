"""The decoder interface: one typed request, one protocol, whichever decoder a pair gets.

    decoder = make_decoder(student, teacher)            # GuidedDecoder or BridgeDecoder
    rows = decoder.generate(DecodeRequest(prompt_ids, ["never", "step:1"], max_new_tokens=128))

`GuidedDecoder` (student and teacher in the one compiled loop) and `BridgeDecoder` (a teacher that
works in text) both implement `Decoder`; callers build a `DecodeRequest` and never ask which decoder
they hold: what only one of them can do is a declared attribute (`can_fork`), and the other's
answer to a request for it is a clear error.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Protocol, Sequence, Union

import numpy as np

from decode.core.policy import Policy

if TYPE_CHECKING:
  from decode.core.vocab import VocabMasks
  from decode.host.options import DecodeOptions
  from decode.host.prefix_caches import PrefixCaches, SharedPrefix
  from decode.host.results import LoopStats, RowResult

PolicyLike = Union[str, Policy]
PerRow = Union[int, float, Sequence]  # one value for every row, or one per row


@dataclasses.dataclass(frozen=True)
class Sampling:
  """How a row samples: temperature 0 = greedy (the paper's setting), top_k 0 / top_p 1 = off.

  In a request each field is one value for every row or one per row; `row(i)` is row i's."""

  temperature: PerRow = 0.0
  top_k: PerRow = 0
  top_p: PerRow = 1.0
  seed: PerRow = 0

  def row(self, i: int) -> Sampling:
    pick = lambda v: v[i] if np.ndim(v) else v
    return Sampling(
      float(pick(self.temperature)), int(pick(self.top_k)), float(pick(self.top_p)), int(pick(self.seed))
    )

  @staticmethod
  def of_rows(rows: Sequence[Sampling]) -> Sampling:
    """Per-row settings as one request's columns."""
    return Sampling(*(tuple(getattr(r, f.name) for r in rows) for f in dataclasses.fields(Sampling)))


@dataclasses.dataclass(frozen=True)
class DecodeRequest:
  """What to decode: prompts (token ids) under policies, with limits and where to start from.

  prompts: token ids per row. policies: a spec or Policy for every row, or one per row.
  max_new_tokens / max_steps: one limit or one per row (None: no step limit).
  prefixes / prefix_steps / prefix_authors: tokens to continue from (a fork, the bridge's rounds),
    the steps they complete, and who wrote each (default: the student).
  texts: the prompts as text for a teacher that reads text (the bridge; default: the student's
    decoding of the ids); a decoder whose teacher reads tokens ignores them.
  max_len / batch_size: fixed buckets (buffer length T, rows B), so a sweep keeps one compiled
    shape; by default T = `decoder.buffer_length(longest prompt, max_new_tokens)` and B = the rows.
  caches: rows of a `prefill` holding a start of each row's prompt + prefix (fork mode).
  shared_prefix: caches of a prefix every prompt starts with; rows prefill only their own suffix.
  """

  prompts: Sequence[Sequence[int]]
  policies: PolicyLike | Sequence[PolicyLike]
  max_new_tokens: int | Sequence[int]
  sampling: Sampling = Sampling()
  max_steps: int | Sequence[int] | None = None
  prefixes: Sequence[Sequence[int]] | None = None
  prefix_steps: Sequence[int] | None = None
  prefix_authors: Sequence[Sequence[int]] | None = None
  texts: Sequence[str] | None = None
  max_len: int | None = None
  batch_size: int | None = None
  caches: PrefixCaches | None = None
  shared_prefix: SharedPrefix | None = None

  def replace(self, **changes) -> DecodeRequest:
    return dataclasses.replace(self, **changes)


class Decoder(Protocol):
  """What every decoder answers. `compiles`: loop compilations its calls caused (teacher's too)."""

  options: DecodeOptions
  masks: VocabMasks
  last_stats: LoopStats | None
  can_fork: bool  # `prefill` gives caches that `generate` can start from (fork mode)

  @property
  def compiles(self) -> int: ...

  def encode(self, texts: Sequence[str]) -> list[list[int]]: ...

  def max_context(self) -> int: ...

  def buffer_length(self, longest_prompt: int, max_new_tokens: int) -> int: ...

  def check_steps(self, policies: Sequence[Policy], max_steps: int | None = None) -> None: ...

  def generate(self, request: DecodeRequest) -> list[RowResult]: ...

  def prefill(
    self,
    prompts: Sequence[Sequence[int]],
    prefixes: Sequence[Sequence[int]],
    *,
    max_len: int,
    batch_size: int | None = None,
    shared_prefix: SharedPrefix | None = None,
  ) -> PrefixCaches: ...

  def shared_prefix(self, prompts: Sequence[Sequence[int]], *, max_len: int) -> SharedPrefix | None: ...

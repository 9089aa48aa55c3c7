"""The fork plan: which rows run how and in which batches, decided before any row runs (plain data).

Fork mode (runner.py) starts every "teacher from step K" row from its problem's student-only run
(its base run, SweepRow.base_key) cut before step K. `plan_rows` says, from the grid's rows and
which of them are finished, which rows decode plain, which base runs are recorded (`never` rows),
which are decoded only to fork from (helpers: the grid records no `never` row for them), and which
forked rows share one prefill (fork groups of up to B problems). Every batch holds at most B rows,
so the number of loop calls is known before the first one: the progress bar's total.

Where a forked row's prefix ends is known only once its base run is decoded; `cut`,
`prefill_lengths` and `fork_batches` (pure, too) place a group's rows then. A row whose base run
ended before step K is that run (copied, no loop call), so a group may leave planned batches unused.
"""

from __future__ import annotations

import dataclasses
from typing import Collection, Sequence

from experiments.sweep.grid import SweepRow

Batch = tuple[SweepRow, ...]  # rows of one loop call, at most batch_size


@dataclasses.dataclass(frozen=True)
class ForkGroup:
  """The forked rows of up to B problems: one prefill of their prompts + base runs, then decode batches."""

  keys: tuple[tuple, ...]  # the problems' base keys, in order of first appearance
  rows: Batch  # their forked rows, in grid order (may be more than B)
  batches: int  # decode batches planned: ceil(len(rows) / B), the most its rows can need

  @property
  def calls(self) -> int:
    return 1 + self.batches  # the prefill, then the decode batches


@dataclasses.dataclass(frozen=True)
class ForkPlan:
  """Run in this order: plain, base, helpers, then each fork group (every fork after its base run)."""

  batch_size: int
  plain: tuple[Batch, ...] = ()  # decoded as given, recorded with mode "plain"
  base: tuple[Batch, ...] = ()  # student-only rows the grid records (mode "base"), forked from
  helpers: tuple[Batch, ...] = ()  # student-only runs forked from but not recorded (decoded as `never`)
  forks: tuple[ForkGroup, ...] = ()

  @property
  def calls(self) -> int:
    """Loop calls the plan may make (prefills included): the progress bar's total."""
    return len(self.plain) + len(self.base) + len(self.helpers) + sum(g.calls for g in self.forks)

  @property
  def empty(self) -> bool:
    return not (self.plain or self.base or self.helpers or self.forks)


def batches(rows: Sequence[SweepRow], batch_size: int) -> tuple[Batch, ...]:
  """Consecutive batches of at most batch_size rows: the one place rows are cut into loop calls."""
  return tuple(tuple(rows[i : i + batch_size]) for i in range(0, len(rows), batch_size))


def plan_rows(
  rows: Sequence[SweepRow],
  *,
  finished: Collection[str],
  base_runs: Collection[tuple],
  fork: bool,
  batch_size: int,
) -> ForkPlan:
  """The plan for the rows whose ids are not in `finished`.

  base_runs: base keys whose student-only run is in the results already (forked from, not re-run).
  fork: False runs every pending row plain.
  """
  pending = [r for r in rows if r.row_id not in finished]
  if not fork:
    return ForkPlan(batch_size, plain=batches(pending, batch_size))
  plain = [r for r in pending if not r.policy.forkable]
  base = [r for r in pending if r.policy.student_only()]  # student-only rows are the base runs
  forked = [r for r in pending if r.policy.forkable and not r.policy.student_only()]
  have = set(base_runs) | {r.base_key for r in base}
  helpers: dict[tuple, SweepRow] = {}
  for r in forked:
    if r.base_key not in have:
      helpers.setdefault(r.base_key, r)  # any of the key's rows: the same prompt and sampling seed
  return ForkPlan(
    batch_size,
    plain=batches(plain, batch_size),
    base=batches(base, batch_size),
    helpers=batches(list(helpers.values()), batch_size),
    forks=fork_groups(forked, batch_size),
  )


def fork_groups(forked: Sequence[SweepRow], batch_size: int) -> tuple[ForkGroup, ...]:
  """Forked rows by problem (base key), B problems a group: one prefill call serves a group."""
  keys = list(dict.fromkeys(r.base_key for r in forked))
  groups = []
  for g in range(0, len(keys), batch_size):
    mine = set(keys[g : g + batch_size])
    members = tuple(r for r in forked if r.base_key in mine)
    groups.append(ForkGroup(tuple(keys[g : g + batch_size]), members, -(-len(members) // batch_size)))
  return tuple(groups)


def cut(row: SweepRow, base_step_ids: Sequence[int]) -> int | None:
  """Tokens of the base run before the row's step K (where its teacher may first act); None when the
  base run ended before step K: the teacher never acts, so the row is its base run (copied)."""
  k = row.policy.step_lo
  return base_step_ids.index(k) if k in base_step_ids else None


def prefill_lengths(group: ForkGroup, cuts: Sequence[int | None]) -> dict[tuple, int]:
  """Base key -> tokens of its base run to prefill (as far as its latest timing needs), for the
  group's problems with a row to run; the order is the prefill's slot order."""
  lengths: dict[tuple, int] = {}
  for r, c in zip(group.rows, cuts):
    if c is not None:
      lengths[r.base_key] = max(lengths[r.base_key], c) if r.base_key in lengths else c
  return {k: lengths[k] for k in group.keys if k in lengths}


def fork_batches(cuts: Sequence[int | None], batch_size: int) -> list[list[int]]:
  """The group's rows that run (index into group.rows) in batches, longest prefix first: a batch runs
  until its longest row ends, so rows with similar remaining budgets share one."""
  order = sorted((i for i, c in enumerate(cuts) if c is not None), key=lambda i: (-cuts[i], i))
  return [order[c : c + batch_size] for c in range(0, len(order), batch_size)]

"""The fork plan on hand-built grids, no models: which rows run how, in which batches, in what order."""

from collections import Counter

import pytest

from decode.core.policy import parse_policy
from experiments.sweep.fork_plan import ForkPlan, cut, fork_batches, plan_rows, prefill_lengths
from experiments.sweep.grid import ModelEntry, expand_grid
from experiments.tasks.datasets import Problem

B = 4
POLICIES = ("never", "always", "step:1", "step:2", "step:3", "step:2,n=2", "entropy:2.0")


def grid(policies=POLICIES, n=7, seeds=(0, 1), students=(ModelEntry("s", "/s"),)):
  probs = [Problem(f"p/{i}", f"q{i}", "1", None, "x") for i in range(n)]
  pols = [parse_policy(p) for p in policies]
  return expand_grid(
    "t", probs, {p.problem_id: p.question for p in probs}, list(students), "T", pols, list(seeds)
  )


def plan(rows, finished=(), base_runs=(), fork=True):
  return plan_rows(rows, finished=set(finished), base_runs=set(base_runs), fork=fork, batch_size=B)


def planned_rows(p: ForkPlan) -> list:
  """Every recorded row the plan runs (helpers are not grid rows)."""
  return [r for b in p.plain + p.base for r in b] + [r for g in p.forks for r in g.rows]


def check_batches(p: ForkPlan) -> None:
  assert all(0 < len(b) <= B for b in p.plain + p.base + p.helpers)
  for g in p.forks:
    assert 0 < len(g.keys) <= B and {r.base_key for r in g.rows} == set(g.keys)
    assert g.batches == -(-len(g.rows) // B)


@pytest.mark.parametrize("fork", [True, False])
def test_every_row_in_exactly_one_batch(fork):
  rows = grid()
  p = plan(rows, fork=fork)
  check_batches(p)
  assert Counter(r.row_id for r in planned_rows(p)) == Counter(r.row_id for r in rows)
  if not fork:
    assert p.plain and not (p.base or p.helpers or p.forks)


def test_rows_go_where_fork_mode_needs_them():
  p = plan(grid())
  assert {r.policy.spec for b in p.plain for r in b} == {"always", "step:1", "entropy:2"}  # K = 1, triggers
  assert {r.policy.spec for b in p.base for r in b} == {"never"}
  assert {r.policy.spec for g in p.forks for r in g.rows} == {"step:2", "step:3", "step:2,n=2"}
  assert not p.helpers  # every problem and seed has its `never` row in the grid


def test_forks_come_after_their_base_run():
  """Plan order is plain, base, helpers, forks: each fork's base run is decoded (or reused) before it."""
  rows = grid(policies=("step:2", "step:3", "always"), seeds=(0, 1, 2))  # no `never` rows: helpers
  done = {r.base_key for r in rows[:5]}  # as if some student-only runs were in the results already
  p = plan(rows, base_runs=done)
  before = done | {r.base_key for b in p.base + p.helpers for r in b}
  assert all(r.base_key in before for g in p.forks for r in g.rows)
  helper_keys = [r.base_key for b in p.helpers for r in b]
  assert len(helper_keys) == len(set(helper_keys)) == 3 * 7 - len(done)  # one per problem and seed
  assert {r.policy.spec for b in p.helpers for r in b} <= {"step:2", "step:3"}  # run as `never` by the runner


def test_finished_rows_are_skipped_and_a_resume_plans_only_the_missing():
  rows = grid()
  assert plan(rows, finished={r.row_id for r in rows}).empty
  finished = {r.row_id for r in rows[::3]}
  never_done = {r.base_key for r in rows[::3] if r.policy.spec == "never"}
  p = plan(rows, finished=finished, base_runs=never_done)
  check_batches(p)
  assert sorted(r.row_id for r in planned_rows(p)) == sorted(
    r.row_id for r in rows if r.row_id not in finished
  )
  assert not p.helpers  # finished `never` rows are forked from, pending ones are run first
  # `never` rows finished in another process's file: done, but not here to fork from, so helpers
  p = plan(rows, finished=finished)
  assert {r.base_key for b in p.helpers for r in b} == never_done & {
    r.base_key for g in p.forks for r in g.rows
  }


def test_the_call_count_is_known_up_front():
  rows = grid(students=(ModelEntry("s", "/s"), ModelEntry("s", "/s2", "ck")))
  p = plan(rows)
  assert p.calls == len(p.plain) + len(p.base) + len(p.helpers) + sum(1 + g.batches for g in p.forks)
  keys = {r.base_key for r in rows}  # one per student, seed and problem: B of them a group
  assert len(keys) == 2 * 2 * 7 and len(p.forks) == -(-len(keys) // B)


def test_cut_and_the_batches_of_a_group():
  rows = [r for r in grid(policies=("step:2", "step:3"), n=3, seeds=(0,))]
  base_steps = {"p/0": [1, 1, 2, 2, 3], "p/1": [1, 1, 1], "p/2": [1, 2, 2, 2, 3, 3]}  # p/1: one step only
  g = plan(rows).forks[0]
  cuts = [cut(r, base_steps[r.problem.problem_id]) for r in g.rows]
  by_row = {(r.policy.spec, r.problem.problem_id): c for r, c in zip(g.rows, cuts)}
  assert by_row == {
    ("step:2", "p/0"): 2,
    ("step:2", "p/1"): None,  # the student ended before step 2: the row is copied from its base run
    ("step:2", "p/2"): 1,
    ("step:3", "p/0"): 4,
    ("step:3", "p/1"): None,
    ("step:3", "p/2"): 4,
  }
  assert list(prefill_lengths(g, cuts).items()) == [(g.keys[0], 4), (g.keys[2], 4)]  # p/1: nothing to run
  out = fork_batches(cuts, 3)
  assert [[cuts[i] for i in b] for b in out] == [[4, 4, 2], [1]]  # longest prefix first
  assert sorted(i for b in out for i in b) == [i for i, c in enumerate(cuts) if c is not None]
  assert len(fork_batches(cuts, B)) <= g.batches


def test_a_grown_grid_plans_only_its_new_rows():
  """A grown sweep: the old problems' `never` rows are in the results, so a new timing forks from
  them (no base or helper run for them); a new problem's base run is planned once, for all its policies."""
  old = grid(policies=("never", "step:2"), n=4, seeds=(0,))
  new = grid(policies=("never", "step:2", "step:3"), n=6, seeds=(0,))
  base_runs = {r.base_key for r in old if r.policy.student_only()}
  p = plan(new, finished={r.row_id for r in old}, base_runs=base_runs)
  check_batches(p)
  assert not p.helpers and not p.plain
  assert [r.problem.problem_id for b in p.base for r in b] == ["p/4", "p/5"]
  forked = sorted((r.policy.spec, r.problem.problem_id) for g in p.forks for r in g.rows)
  assert forked == sorted([("step:3", f"p/{i}") for i in range(6)] + [("step:2", "p/4"), ("step:2", "p/5")])

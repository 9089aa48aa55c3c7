"""analysis's timing side (timing.py) on hand-built rows: gains without leakage, step 1 minus step K
and the per-problem counterfactuals, every number known in advance."""

from __future__ import annotations

import math
from typing import Any

import pandas as pd
import pytest
from analysis_rows import make_rows, one, row

from experiments.report import analysis

# --------------------------------------------------------------------------- timing without leakage

GOLD_STEPS = [1, 2, 3, 1, 2, 3, 1, 2, 3, 1]  # problem i's gold solution length


def rows_with_gold_steps() -> list[dict[str, Any]]:
  return [dict(r, gold_steps=GOLD_STEPS[int(r["problem_id"][1:])]) for r in make_rows()]


@pytest.mark.parametrize(
  "policy,last",
  [
    ("step:1", 1),
    ("step:3", 3),
    ("hint:2", 2),
    ("hint:2,m=3", 2),
    ("step:2,m=3", 2),
    ("step:2,n=3", 4),  # the teacher writes steps 2, 3 and 4
    ("never", None),
    ("always", None),
    ("entropy:0.5,budget=1", None),
  ],
)
def test_last_teacher_step(policy: str, last: int | None) -> None:
  assert analysis.last_teacher_step(policy) == last


def test_no_leak_subset_accuracy_and_gain() -> None:
  s = analysis.summarize(pd.DataFrame(rows_with_gold_steps()), n_boot=2000, seed=0)
  # step:1 on gold steps > 1: p1 p2 p4 p5 p7 p8. Right: p1 p2 p4 p5 (4/6); student alone: p1 (1/6).
  s1 = one(s, "step:1")
  assert s1.n_no_leak == 6 and s1.accuracy_no_leak == pytest.approx(4 / 6)
  assert s1.gain_no_leak_points == pytest.approx(50.0)
  assert s1.gain_no_leak_ci_low <= 50.0 <= s1.gain_no_leak_ci_high
  assert s1.gain_points == pytest.approx(40.0)  # the raw gain is unchanged beside it
  # step:2 on gold steps > 2: p2 p5 p8. Right: p2 only; student alone: none. Per-problem
  # differences are 1, 0, 0: a resample is all zeros with probability (2/3)^3 > 2.5% and all ones
  # with 1/27 > 2.5%, so the 95% CI spans exactly [0, 100].
  s2 = one(s, "step:2")
  assert s2.n_no_leak == 3 and s2.accuracy_no_leak == pytest.approx(1 / 3)
  assert s2.gain_no_leak_points == pytest.approx(100 / 3)
  assert (s2.gain_no_leak_ci_low, s2.gain_no_leak_ci_high) == (0.0, 100.0)
  for policy in ("never", "always"):  # no fixed last teacher step
    r = one(s, policy)
    assert pd.isna(r.n_no_leak) and math.isnan(r.accuracy_no_leak) and math.isnan(r.gain_no_leak_points)


def test_hint_policies_get_no_leak_columns_too() -> None:
  rows = rows_with_gold_steps()
  rows += [
    dict(r, policy="hint:2,m=4", row_id=f"hint|{r['problem_id']}") for r in rows if r["policy"] == "step:2"
  ]
  h = one(analysis.summarize(pd.DataFrame(rows), n_boot=200), "hint:2,m=4")
  assert math.isnan(h.step_k)  # not a point of the step curve, but its timing is fixed at step 2
  assert h.n_no_leak == 3 and h.gain_no_leak_points == pytest.approx(100 / 3)


def test_rows_without_gold_steps_are_left_out_of_the_no_leak_columns() -> None:
  rows = rows_with_gold_steps()
  for r in rows:  # older results files: p1 and p2 carry no gold_steps; SVAMP-like rows carry None
    if r["problem_id"] in ("p1", "p2"):
      del r["gold_steps"]
    if r["problem_id"] == "p4":
      r["gold_steps"] = None
  s = analysis.summarize(pd.DataFrame(rows), n_boot=200)
  s1 = one(s, "step:1")  # gold steps > 1 and known: p5 p7 p8; right: p5; student alone: none
  assert s1.n_no_leak == 3 and s1.accuracy_no_leak == pytest.approx(1 / 3)
  assert s1.gain_no_leak_points == pytest.approx(100 / 3) and s1.gain_points == pytest.approx(40.0)
  old = analysis.summarize(pd.DataFrame(make_rows()), n_boot=200)  # no row knows its gold steps
  assert old.n_no_leak.isna().all() and old.gain_no_leak_points.isna().all()
  assert one(old, "step:1").gain_points == pytest.approx(40.0)


def test_step1_minus_step_k_difference_and_its_ci() -> None:
  df = pd.DataFrame(rows_with_gold_steps())
  t = analysis.timing_differences(df, n_boot=2000, seed=0)
  assert list(t.columns) == analysis.TIMING_COLUMNS and len(t) == 1
  r = t.iloc[0]
  s = analysis.summarize(df, n_boot=10)
  # Per problem, step:1 - step:2 is -1 (p0), +1 (p3..p6), 0 elsewhere: +3/10, the difference of gains.
  assert r.step_k == 2 and r.n_units == 10 and r.diff_points == pytest.approx(30.0)
  assert r.diff_points == pytest.approx(one(s, "step:1").gain_points - one(s, "step:2").gain_points)
  # Ten draws of -1 (1 in 10), +1 (4 in 10), 0: mean +0.3, sd of the mean 0.20, so the 95% CI is
  # +0.3 -/+ 0.40 on the grid of tenths: [-10, +70] points.
  assert (r.diff_ci_low, r.diff_ci_high) == (-10.0, 70.0)
  # On gold steps > 2 (p2 p5 p8): 0, +1, 0, so the CI is [0, 100] as in the no-leak gain above.
  assert r.n_units_no_leak == 3 and r.diff_no_leak_points == pytest.approx(100 / 3)
  assert (r.diff_no_leak_ci_low, r.diff_no_leak_ci_high) == (0.0, 100.0)
  pd.testing.assert_frame_equal(t, analysis.timing_differences(df, n_boot=2000, seed=0))  # fixed seed


def test_step_differences_per_config_in_the_rows_order() -> None:
  """One row per configuration that ran step:1 and a later step, in the order the rows give them; a
  configuration without step:1 is left out, not the end of the table; labels as in the summary."""
  rows = []
  for student, policies in (("s-b", ("never", "step:2")), ("s-c", ("never", "step:1", "step:2"))):
    rows += [
      row(p, i, i < 3, student=student, row_id=f"{student}|{p}|{i}") for p in policies for i in range(4)
    ]
  rows += [dict(r, student="s-a", row_id="a" + r["row_id"]) for r in rows if r["student"] == "s-c"]
  t = analysis.timing_differences(pd.DataFrame(rows), n_boot=10)
  assert list(t.student) == ["s-c", "s-a"] and list(t.step_k) == [2, 2]
  assert set(t.teacher) == {"teacher-big"} and list(t.checkpoint) == [None, None]
  assert str(t.n_units_no_leak.dtype) == "Int64" and t.n_units_no_leak.isna().all()  # no gold steps


def test_difference_ci_of_a_constant_difference_is_the_point() -> None:
  # step:1 right and step:3 wrong on every problem: every resample's difference is exactly +100.
  rows = [row("never", i, False, gold_steps=4) for i in range(4)]
  rows += [row("step:1", i, True, gold_steps=4) for i in range(4)]
  rows += [row("step:3", i, False, gold_steps=4) for i in range(4)]
  r = analysis.timing_differences(pd.DataFrame(rows), n_boot=300).iloc[0]
  assert (r.step_k, r.n_units, r.diff_points, r.diff_ci_low, r.diff_ci_high) == (3, 4, 100.0, 100.0, 100.0)
  assert r.n_units_no_leak == 4 and (r.diff_no_leak_ci_low, r.diff_no_leak_ci_high) == (100.0, 100.0)
  without = analysis.timing_differences(pd.DataFrame(make_rows()), n_boot=50).iloc[0]
  assert pd.isna(without.n_units_no_leak) and math.isnan(without.diff_no_leak_points)


# --------------------------------------------------------------------------- counterfactuals

# Who is right, per problem: student alone, then the teacher writing step 1, 2, 3.
#   p0: right | wrong (harm), right, wrong (harm)    p3: wrong | wrong, right, right  -> earliest 2
#   p1: wrong | right (rescue), wrong, wrong -> 1     p4: wrong | wrong, wrong, right  -> earliest 3
#   p2: wrong | wrong, right, wrong -> earliest 2     p5: wrong | wrong, wrong, wrong  -> none
CF_RIGHT = {"never": {0}, "step:1": {1}, "step:2": {0, 2, 3}, "step:3": {3, 4}, "hint:1,m=4": {5}}


def counterfactual_rows() -> list[dict[str, Any]]:
  rows = [row(p, i, i in right, row_id=f"{p}|{i}") for p, right in CF_RIGHT.items() for i in range(6)]
  return [r for r in rows if not (r["policy"] == "step:3" and r["problem_id"] == "p5")]  # not run


def test_counterfactual_table_rescue_and_harm_per_k() -> None:
  cf = analysis.counterfactuals(pd.DataFrame(counterfactual_rows()))
  assert list(cf.problem_id) == [f"p{i}" for i in range(6)]
  assert [c for c in cf.columns if c.startswith("step_")] == ["step_1", "step_2", "step_3"]  # no hint column
  cells = cf[["step_1", "step_2", "step_3"]].fillna("").values.tolist()
  assert cells == [
    ["harm", "right", "harm"],
    ["rescue", "wrong", "wrong"],
    ["wrong", "rescue", "wrong"],
    ["wrong", "rescue", "rescue"],
    ["wrong", "wrong", "rescue"],
    ["wrong", "wrong", ""],  # step:3 was not run on p5
  ]
  assert list(cf.base_correct) == [True, False, False, False, False, False]
  assert list(cf.n_rescue) == [0, 1, 1, 2, 1, 0] and list(cf.n_harm) == [2, 0, 0, 0, 0, 0]
  assert [None if pd.isna(v) else int(v) for v in cf.earliest_rescue] == [None, 1, 2, 2, 3, None]
  assert cf.teacher.iloc[0] == "teacher-big" and cf.checkpoint.iloc[0] is None
  # counterfactuals.csv's columns and types: the unit, what it is, then one cell per K swept.
  assert list(cf.columns) == [
    *("task", "student", "teacher", "checkpoint", "seed", "problem_id", "gold_steps", "base_correct"),
    *("step_1", "step_2", "step_3", "n_rescue", "n_harm", "earliest_rescue"),
  ]
  assert (cf.base_correct.dtype, cf.gold_steps.dtype, cf.earliest_rescue.dtype) == (bool, "Int64", "Int64")


def test_earliest_rescue_distribution() -> None:
  rows = counterfactual_rows()
  rows += [
    row(p, 0, p == "step:2", student="student-tiny", row_id=f"t{p}") for p in ("never", "step:1", "step:2")
  ]
  dist = analysis.earliest_rescue_distribution(analysis.counterfactuals(pd.DataFrame(rows)))
  small = dist[dist.student == "student-small"]
  assert list(small.earliest) == ["1", "2", "3", "none"]
  assert list(small["count"]) == [1, 2, 1, 1] and set(small.n_failed) == {5}
  assert list(small.share) == pytest.approx([0.2, 0.4, 0.2, 0.2])
  tiny = dist[dist.student == "student-tiny"]  # one failure, first rescued at step 2; no step 3 swept
  assert list(tiny.earliest) == ["1", "2", "none"] and list(tiny["count"]) == [0, 1, 0]


def test_earliest_rescue_distribution_keeps_labels_and_reading_order() -> None:
  """Checkpoints in natural order (ckpt-9 before ckpt-10, as the counterfactual table reads), the
  teacher's label kept, the checkpoint's missing label back to None; an empty table keeps its columns."""
  rows = []
  for ckpt, right in (("ckpt-9", {1}), ("ckpt-10", {2}), (None, set())):
    rows += [
      row(p, i, i in right and p != "never", checkpoint=ckpt, row_id=f"{ckpt}|{p}|{i}")
      for p in ("never", "step:1")
      for i in range(3)
    ]
  dist = analysis.earliest_rescue_distribution(analysis.counterfactuals(pd.DataFrame(rows)))
  labels = [None if pd.isna(c) else c for c in dist.checkpoint]  # missing: None or NaN, as pandas has it
  assert [(c, e, n) for c, e, n in zip(labels, dist.earliest, dist["count"])] == [
    (None, "1", 0),
    (None, "none", 3),
    ("ckpt-9", "1", 1),
    ("ckpt-9", "none", 2),
    ("ckpt-10", "1", 1),
    ("ckpt-10", "none", 2),
  ]
  assert set(dist.teacher) == {"teacher-big"}
  empty = analysis.earliest_rescue_distribution(analysis.counterfactuals(pd.DataFrame(rows[:3])))
  assert empty.empty and list(empty.columns) == [
    "task",
    "student",
    "teacher",
    "checkpoint",
    "earliest",
    "count",
    "n_failed",
    "share",
  ]


def test_no_failures_to_rescue_is_an_undefined_share() -> None:
  """A configuration whose student alone is always right has no failures: counts 0, shares NaN; a
  missing teacher label comes back as None."""
  rows = [row(p, i, True, teacher=None, row_id=f"{p}|{i}") for p in ("never", "step:1") for i in range(3)]
  dist = analysis.earliest_rescue_distribution(analysis.counterfactuals(pd.DataFrame(rows)))
  assert list(dist.earliest) == ["1", "none"] and list(dist["count"]) == [0, 0] and set(dist.n_failed) == {0}
  assert dist.share.isna().all() and list(dist.teacher) == [None, None]
  t = analysis.timing_differences(
    pd.DataFrame(
      rows + [dict(r, policy="step:2", row_id="2" + r["row_id"]) for r in rows if r["policy"] == "step:1"]
    ),
    n_boot=10,
  )
  assert list(t.teacher) == [None] and list(t.student) == ["student-small"]


def test_counterfactual_table_is_in_natural_reading_order() -> None:
  """Teachers, checkpoints and problems in natural order (t-9 before t-10, p2 before p10), whatever
  the order of the rows."""
  rows = [
    row(p, 0, False, problem_id=f"p{i}", teacher=t, checkpoint=c, row_id=f"{t}|{c}|{p}|{i}")
    for t in ("t-10", "t-9")
    for c in ("c-10", "c-9")
    for p in ("never", "step:1")
    for i in (10, 2, 1)
  ]
  cf = analysis.counterfactuals(pd.DataFrame(rows))
  assert list(zip(cf.teacher, cf.checkpoint, cf.problem_id)) == [
    (t, c, f"p{i}") for t in ("t-9", "t-10") for c in ("c-9", "c-10") for i in (1, 2, 10)
  ]


def test_no_counterfactuals_without_step_rows_or_baseline() -> None:
  only_triggers = [
    row(p, i, True, row_id=f"{p}{i}") for p in ("never", "entropy:1", "always") for i in range(3)
  ]
  empty = analysis.counterfactuals(pd.DataFrame(only_triggers))
  assert empty.empty and list(empty.columns) == [
    *("task", "student", "teacher", "checkpoint", "seed", "problem_id"),
    *("gold_steps", "base_correct", "n_rescue", "n_harm", "earliest_rescue"),
  ]  # the columns a reader of counterfactuals.csv finds, rows or none
  unpaired = [row("step:1", i, True) for i in range(3)]
  cf = analysis.counterfactuals(pd.DataFrame(unpaired))
  assert cf.empty and analysis.earliest_rescue_distribution(cf).empty


def test_no_leak_tables_per_config_measured_or_not() -> None:
  """Three configurations in this order: s-c always rescued by either step on four long problems
  (common set of all four, gain +100 with CI [+100, +100]); s-b records no teacher text (not
  measured: every column None, each step still listed); s-a's solutions are one step long (measured,
  nothing leak-free: no units, accuracy undefined)."""
  rows = []
  for student, gold, text in (("s-c", 5, "First, 2 * 3 = 6.\n"), ("s-b", 5, None), ("s-a", 1, "2 * 3 = 6\n")):
    for p in ("never", "step:1", "step:2"):
      rows += [
        row(
          p, i, p != "never", student=student, gold_steps=gold, teacher_text=text, row_id=f"{student}|{p}|{i}"
        )
        for i in range(4)
      ]
  df = pd.DataFrame(rows)
  c = analysis.common_no_leak(df, n_boot=50)
  assert list(zip(c.student, c.step_k)) == [
    ("s-c", 1),
    ("s-c", 2),
    ("s-b", 1),
    ("s-b", 2),
    ("s-a", 1),
    ("s-a", 2),
  ]
  assert (
    c[c.student == "s-b"]
    .drop(columns=["task", "student", "teacher", "checkpoint", "step_k"])
    .isna()
    .all()
    .all()
  )
  rescued = c[c.student == "s-c"]
  assert list(rescued.no_leak_common_k) == [2, 2] and list(rescued.n_no_leak_common) == [4, 4]
  assert list(rescued.accuracy_no_leak_common) == [1.0, 1.0] and list(rescued.gain_no_leak_common_points) == [
    100.0,
    100.0,
  ]
  assert list(rescued.gain_no_leak_common_ci_low) == [100.0, 100.0] and list(
    rescued.gain_no_leak_common_ci_high
  ) == [
    100.0,
    100.0,
  ]
  short = c[c.student == "s-a"]
  assert list(short.n_no_leak_common) == [0, 0] and short.accuracy_no_leak_common.isna().all()
  s = analysis.summarize(df, n_boot=50).set_index(["student", "policy"])
  assert s.loc[
    ("s-c", "step:1"), ["n_no_leak", "gain_no_leak_points", "gain_no_leak_ci_low", "gain_no_leak_ci_high"]
  ].tolist() == [4, 100.0, 100.0, 100.0]
  assert s.loc[("s-a", "step:1"), "n_no_leak"] == 0 and math.isnan(
    s.loc[("s-a", "step:1"), "accuracy_no_leak"]
  )

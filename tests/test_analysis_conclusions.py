"""The analysis rules behind the report's conclusions, on hand-worked rows: the bootstrap resamples
problems (several seeds of one problem stay together) in every CI, leak-free means both enough gold
steps and a teacher text without the gold answer, the common-set no-leak curve, and rows without a
correctness value left out of every table. The report's wording is in test_report_conclusions.py."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd
import pytest
from analysis_rows import make_rows, one, row

from experiments.report import analysis
from experiments.report.controls import matched_controls

# --------------------------------------------------------------------------- grouping by problem

# Ten problems; which ones each policy gets right, the same on every seed (seeds perfectly correlated).
RIGHT = {
  "never": set(),
  "step:1": {0, 1, 2, 3, 4},
  "step:2": {0, 1},
  "entropy:q=0.5": {0, 1, 2, 3, 4},
  "random:0.5": {0},
  "always": set(range(8)),
}


def seeded_rows(n_seeds: int) -> list[dict[str, Any]]:
  rows = []
  for policy, right in RIGHT.items():
    for seed in range(n_seeds):
      for i in range(10):
        extra = {"matched_to": "entropy:q=0.5"} if policy.startswith("random") else {}
        text = "" if policy == "never" else "First, 2 * 3 = 6.\n"
        rows.append(
          row(
            policy,
            i,
            i in right,
            seed=seed,
            gold_steps=5,
            teacher_text=text,
            row_id=f"{policy}|{seed}|{i}",
            **extra,
          )
        )
  return rows


def all_cis(rows: list[dict[str, Any]]) -> dict[str, float]:
  """Every CI bound the report prints, by where it comes from."""
  df = pd.DataFrame(rows)
  s = analysis.summarize(df, n_boot=1000).set_index("policy")
  t = analysis.timing_differences(df, n_boot=1000).iloc[0]
  c = matched_controls(analysis.prepare(df), n_boot=1000).iloc[0]
  v = analysis.versus_reference(df, n_boot=1000).set_index("policy").loc["step:1"]
  out = {}
  for col in ("gain", "gain_no_leak", "gain_no_leak_common"):
    out[col] = (s.loc["step:1", f"{col}_ci_low"], s.loc["step:1", f"{col}_ci_high"])
  out["timing"] = (t.diff_ci_low, t.diff_ci_high)
  out["timing_no_leak"] = (t.diff_no_leak_ci_low, t.diff_no_leak_ci_high)
  out["control"] = (c.diff_ci_low, c.diff_ci_high)
  out["versus_always"] = (v.diff_ci_low, v.diff_ci_high)
  return out


def test_every_ci_resamples_problems_not_rows() -> None:
  # Five identical seeds per problem carry no more information than one: resampling problems gives
  # exactly the one-seed CI, while resampling rows would treat 50 rows as independent and shrink it.
  one_seed, five_seeds = all_cis(seeded_rows(1)), all_cis(seeded_rows(5))
  assert set(one_seed) == set(five_seeds)
  for name, (low, high) in five_seeds.items():
    assert (low, high) == pytest.approx(one_seed[name]), name
    assert high - low > 0, name
  # The row-level CI on the same 50 pairs of step:1 vs the student alone is clearly narrower.
  pol = np.array([i in RIGHT["step:1"] for _ in range(5) for i in range(10)], dtype=float)
  rows_low, rows_high = analysis.paired_bootstrap_ci(pol, np.zeros_like(pol), n_boot=1000)
  low, high = five_seeds["gain"]
  assert (high - low) > 1.8 * 100 * (rows_high - rows_low)  # about sqrt(5) wider


def test_bootstrap_groups_keep_identical_seeds_together() -> None:
  pol = np.array([1, 1, 0, 0, 1, 0, 1, 0], dtype=float)
  base = np.zeros(8)
  one_seed = analysis.paired_bootstrap_ci(pol, base, n_boot=2000, seed=3, groups=np.arange(8))
  groups = np.tile(np.arange(8), 4)  # four identical seeds of each problem
  grouped = analysis.paired_bootstrap_ci(
    np.tile(pol, 4), np.tile(base, 4), n_boot=2000, seed=3, groups=groups
  )
  assert grouped == pytest.approx(one_seed)
  ungrouped = analysis.paired_bootstrap_ci(np.tile(pol, 4), np.tile(base, 4), n_boot=2000, seed=3)
  assert ungrouped[1] - ungrouped[0] < 0.7 * (grouped[1] - grouped[0])


# --------------------------------------------------------------------------- leakage from the teacher's text

GOLD_STEPS = [1, 2, 3, 1, 2, 3, 1, 2, 3, 1]  # as in test_timing_analysis


def rows_with_gold_steps() -> list[dict[str, Any]]:
  return [dict(r, gold_steps=GOLD_STEPS[int(r["problem_id"][1:])]) for r in make_rows()]


def test_leak_free_needs_long_gold_solutions_and_a_text_without_the_answer() -> None:
  d = analysis.prepare(pd.DataFrame(rows_with_gold_steps()))
  step1 = d[d.policy == "step:1"]
  # make_rows: step:1's text states the answer on p3 only (gold 1 step) and "1<answer> - 5" on p4.
  assert list(analysis.leaked_rows(step1)) == [i == 3 for i in range(10)]
  assert list(analysis.leak_free(step1, 1)) == [GOLD_STEPS[i] > 1 for i in range(10)]
  leaking = pd.DataFrame([dict(r, gold_steps=4) for r in make_rows()])
  step1 = analysis.prepare(leaking)
  step1 = step1[step1.policy == "step:1"]
  assert list(analysis.leak_free(step1, 1)) == [i != 3 for i in range(10)]  # 4 gold steps, yet p3 leaks


def test_step_differences_without_leakage_drop_units_where_either_text_states_the_answer() -> None:
  rows = rows_with_gold_steps()
  for r in rows:  # step:2 states the answer on p5 (3 gold steps): the unit is no longer leak-free
    if r["policy"] == "step:2" and r["problem_id"] == "p5":
      r["teacher_text"] = f"so {r['answer']} in all"
  t = analysis.timing_differences(pd.DataFrame(rows), n_boot=200).iloc[0]
  # Gold > 2 and both texts clean: p2 p8 (p5 dropped); step:1 - step:2 there: 0, 0.
  assert t.n_units_no_leak == 2 and t.diff_no_leak_points == 0.0
  assert t.n_units == 10 and t.diff_points == pytest.approx(30.0)  # all units: unchanged


def test_no_leak_columns_are_not_measured_without_teacher_text() -> None:
  rows = [{k: v for k, v in r.items() if k != "teacher_text"} for r in rows_with_gold_steps()]
  s = analysis.summarize(pd.DataFrame(rows), n_boot=50)
  assert s.n_no_leak.isna().all() and s.n_no_leak_common.isna().all() and s.leakage_rate.isna().all()
  t = analysis.timing_differences(pd.DataFrame(rows), n_boot=50).iloc[0]
  assert pd.isna(t.n_units_no_leak) and math.isnan(t.diff_no_leak_points)


def test_common_set_no_leak_curve() -> None:
  s = analysis.summarize(pd.DataFrame(rows_with_gold_steps()), n_boot=500)
  # step:1 and step:2 swept: units with more than 2 gold steps, no leak in either row: p2 p5 p8.
  s1, s2 = one(s, "step:1"), one(s, "step:2")
  assert (s1.no_leak_common_k, s1.n_no_leak_common, s2.n_no_leak_common) == (2, 3, 3)
  assert s1.accuracy_no_leak_common == pytest.approx(
    2 / 3
  ) and s1.gain_no_leak_common_points == pytest.approx(200 / 3)
  assert s2.accuracy_no_leak_common == pytest.approx(
    1 / 3
  ) and s2.gain_no_leak_common_points == pytest.approx(100 / 3)
  assert s1.n_no_leak == 6  # its own no-leak set is larger: the reason for the common one
  table = analysis.common_no_leak(pd.DataFrame(rows_with_gold_steps()), n_boot=500).set_index("step_k")
  assert list(table.n_no_leak_common) == [3, 3]
  assert table.loc[1, "gain_no_leak_common_ci_low"] == s1.gain_no_leak_common_ci_low  # the same numbers
  for policy in ("never", "always"):
    r = one(s, policy)
    assert pd.isna(r.n_no_leak_common) and math.isnan(r.gain_no_leak_common_points)


def test_common_set_needs_every_step_run_on_the_unit() -> None:
  rows = [r for r in rows_with_gold_steps() if not (r["policy"] == "step:2" and r["problem_id"] == "p8")]
  s = analysis.summarize(pd.DataFrame(rows), n_boot=100)
  assert one(s, "step:1").n_no_leak_common == 2 and one(s, "step:2").n_no_leak_common == 2  # p2 p5


# --------------------------------------------------------------------------- rows without a correctness value


def test_unscored_rows_are_read_as_neither_right_nor_wrong() -> None:
  rows = make_rows()
  for r in rows:
    if r["policy"] == "step:1" and r["problem_id"] in ("p0", "p2"):
      r["correct"] = None  # p0: a harm, p2: a rescue, had they been scored
    if r["policy"] == "step:2" and r["problem_id"] == "p3":
      r["correct"], r["error"] = True, "non-finite logits at position 7"  # an error row is never scored
  d = analysis.prepare(pd.DataFrame(rows))
  assert int((~d.scored).sum()) == 3 and d.correct.isna().sum() == 3
  assert len(analysis.scored_rows(d)) == len(rows) - 3
  s = analysis.summarize(pd.DataFrame(rows), n_boot=100)
  s1 = one(s, "step:1")  # scored p1 p3..p9: right p1 p3..p6 (5 of 8), the student alone p1 (1 of 8)
  assert (s1.n, s1.n_unscored, s1.n_errors, s1.n_paired) == (8, 2, 0, 8)
  assert s1.accuracy == 5 / 8 and s1.gain_points == pytest.approx(50.0) and (s1.rescue, s1.harm) == (4, 0)
  s2 = one(s, "step:2")
  assert (s2.n, s2.n_unscored, s2.n_errors) == (9, 1, 1) and s2.accuracy == pytest.approx(3 / 9)
  cf = analysis.counterfactuals(pd.DataFrame(rows)).set_index("problem_id")
  assert pd.isna(cf.loc["p0", "step_1"]) and cf.loc["p0", "step_2"] == "right"
  assert pd.isna(cf.loc["p3", "step_2"]) and cf.loc["p3", "step_1"] == "rescue"
  t = analysis.timing_differences(pd.DataFrame(rows), n_boot=100).iloc[0]
  assert t.n_units == 7  # units with both step rows scored: not p0 p2 p3


def test_an_unscored_never_row_pairs_with_nothing() -> None:
  rows = make_rows()
  for r in rows:
    if r["policy"] == "never" and r["problem_id"] == "p9":
      r["correct"] = float("nan")
  s = analysis.summarize(pd.DataFrame(rows), n_boot=100)
  s1 = one(s, "step:1")
  assert (s1.n, s1.n_paired) == (10, 9) and s1.accuracy == pytest.approx(0.6)
  # p9 (step:1 wrong) leaves the paired rows: 6 of 9 right against 2 of 9.
  assert s1.paired_accuracy == pytest.approx(6 / 9) and s1.baseline_accuracy == pytest.approx(2 / 9)
  assert s1.gain_points == pytest.approx(100 * (s1.paired_accuracy - s1.baseline_accuracy))
  assert one(s, "never").n_unscored == 1


# --------------------------------------------------------------------------- reproducible CIs


@pytest.mark.parametrize(
  "table",
  [
    lambda df, **kw: analysis.summarize(df, **kw),
    lambda df, **kw: analysis.common_no_leak(df, **kw),
    lambda df, **kw: analysis.timing_differences(df, **kw),
    lambda df, **kw: analysis.versus_reference(df, **kw),
    lambda df, **kw: matched_controls(analysis.prepare(df), **kw),
  ],
  ids=["summarize", "common_no_leak", "timing_differences", "versus_reference", "matched_controls"],
)
def test_every_table_bootstraps_2000_resamples_from_seed_0_by_default(table) -> None:
  """The report's CIs are reproducible: each table, called as the report calls it, equals itself with
  the documented bootstrap (2000 resamples, seed 0) spelt out. 97 problems with uneven patterns, so
  the CI endpoints fall between resampled values and move with the seed."""
  right = {
    "never": lambda i: i % 3 == 0,
    "step:1": lambda i: i % 2 == 0,
    "step:2": lambda i: i % 5 < 2,
    "always": lambda i: i % 7 != 0,
    "entropy:q=0.5": lambda i: i % 4 != 0,
    "random:0.5": lambda i: i % 3 != 1,
  }
  rows = []
  for policy, ok in right.items():
    extra = {"matched_to": "entropy:q=0.5"} if policy == "random:0.5" else {}
    text = "" if policy == "never" else "First, 2 * 3 = 6.\n"
    for i in range(97):
      rows.append(
        row(
          policy,
          0,
          ok(i),
          problem_id=f"p{i}",
          row_id=f"{policy}|{i}",
          answer=str(1000 + i),
          gold_steps=5,
          teacher_text=text,
          step_ids=[1, 2],
          intervention_steps=[1],
          **extra,
        )
      )
  df = pd.DataFrame(rows)
  pd.testing.assert_frame_equal(table(df), table(df, n_boot=2000, seed=0))
  assert not table(df).equals(table(df, n_boot=2000, seed=1))  # the seed reaches the CIs


def test_matched_controls_table_order_labels_and_columns() -> None:
  """Controls sorted by configuration, trigger and control (maxprob's rows come first here, entropy's
  row comes first in the table); a control whose trigger has no rows is skipped, not the end of the
  table; each row names its configuration; no controls: an empty table with the columns."""
  from experiments.report.controls import CONTROL_COLUMNS

  rows = []
  for trigger, control in (
    ("maxprob:q=0.5", "random:0.3"),
    ("entropy:q=0.5", "random:0.4"),
    ("entropy:q=0.1", "random:0.9"),
  ):
    for i in range(4):
      if trigger != "entropy:q=0.1":  # the last control's trigger never ran
        rows.append(row(trigger, i, True, row_id=f"{trigger}|{i}"))
      rows.append(row(control, i, i < 2, matched_to=trigger, row_id=f"{control}|{i}"))
  c = matched_controls(analysis.prepare(pd.DataFrame(rows)), n_boot=10)
  assert list(zip(c.trigger, c.control)) == [("entropy:q=0.5", "random:0.4"), ("maxprob:q=0.5", "random:0.3")]
  assert set(c.student) == {"student-small"} and set(c.task) == {"synthetic"} and list(c.n) == [4, 4]
  empty = matched_controls(analysis.prepare(pd.DataFrame([r for r in rows if "matched_to" not in r])))
  assert empty.empty and list(empty.columns) == CONTROL_COLUMNS

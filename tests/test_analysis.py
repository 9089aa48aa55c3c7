"""analysis's numbers (stats, summary) on hand-built rows whose every number is known in advance:
the paired bootstrap and the summary table. Policies, answer checks and loading are in
test_analysis_policies.py, test_analysis_answer_checks.py and test_analysis_loading.py; the timing
analyses in test_timing_analysis.py."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from analysis_rows import CORRECT, N, make_rows, one, row

from experiments.report import analysis
from experiments.report.timing import NO_LEAK_COLUMNS, no_leak_columns
from model.errors import UserError

# --------------------------------------------------------------------------- bootstrap


def test_bootstrap_contains_estimate_and_is_deterministic() -> None:
  pol = np.array([int(i in CORRECT["step:1"]) for i in range(N)])
  base = np.array([int(i in CORRECT["never"]) for i in range(N)])
  ci = analysis.paired_bootstrap_ci(pol, base, n_boot=1000, seed=7)
  assert ci == analysis.paired_bootstrap_ci(pol, base, n_boot=1000, seed=7)
  low, high = ci
  assert low <= 0.4 <= high
  assert -1.0 <= low < high <= 1.0


def test_bootstrap_width_matches_normal_approximation() -> None:
  rng = np.random.default_rng(0)
  base = rng.random(400) < 0.3
  pol = base | (rng.random(400) < 0.3)  # only rescues, never harm
  diff = pol.astype(float) - base
  low, high = analysis.paired_bootstrap_ci(pol, base, n_boot=2000, seed=1)
  se = diff.std(ddof=1) / np.sqrt(diff.size)
  assert low < diff.mean() < high
  assert (high - low) == pytest.approx(2 * 1.96 * se, rel=0.15)
  # Resampling whole problems (two seeds each) is not the same as resampling pairs.
  grouped = analysis.paired_bootstrap_ci(pol, base, n_boot=2000, seed=1, groups=np.arange(400) // 2)
  assert grouped != (low, high) and grouped[0] < diff.mean() < grouped[1]


def test_bootstrap_degenerate_cases() -> None:
  same = [1, 0, 1, 1]
  assert analysis.paired_bootstrap_ci(same, same, n_boot=200, seed=0) == (0.0, 0.0)
  # One group holds every pair: every resample is the whole sample, so the CI is the point.
  low, high = analysis.paired_bootstrap_ci([1, 1, 0, 1], [0, 1, 0, 0], n_boot=200, seed=0, groups=["a"] * 4)
  assert low == pytest.approx(0.5) and high == pytest.approx(0.5)
  assert all(math.isnan(x) for x in analysis.paired_bootstrap_ci([], [], n_boot=10, seed=0))
  with pytest.raises(ValueError, match=r"^need two 1-d arrays of equal length, got \(2,\) and \(1,\)$"):
    analysis.paired_bootstrap_ci([1, 0], [1], n_boot=10, seed=0)
  with pytest.raises(ValueError, match="^groups must have one entry per pair$"):
    analysis.paired_bootstrap_ci([1, 0], [1, 1], n_boot=10, seed=0, groups=["a"])


def test_bootstrap_defaults_are_2000_resamples_from_seed_0() -> None:
  rng = np.random.default_rng(5)
  pol, base = rng.random(97) < 0.6, rng.random(97) < 0.4  # endpoints between resampled values
  ci = analysis.paired_bootstrap_ci(pol, base)
  assert ci == analysis.paired_bootstrap_ci(pol, base, n_boot=2000, seed=0)
  assert ci != analysis.paired_bootstrap_ci(pol, base, n_boot=2001, seed=0)
  assert ci != analysis.paired_bootstrap_ci(pol, base, n_boot=2000, seed=1)


# --------------------------------------------------------------------------- summarize


def test_summarize_known_numbers() -> None:
  s = analysis.summarize(pd.DataFrame(make_rows()), n_boot=500, seed=0)
  assert list(s.policy) == ["never", "step:1", "step:2", "always"]

  never = one(s, "never")
  assert never.accuracy == pytest.approx(0.2)
  assert never.gain_points == 0 and never.rescue == 0 and never.harm == 0
  assert (never.gain_ci_low, never.gain_ci_high) == (0.0, 0.0)
  assert never.teacher_fraction == 0 and never.leakage_rate == 0 and math.isnan(never.step_k)

  s1 = one(s, "step:1")
  assert s1.n == 10 and s1.n_problems == 10 and s1.n_paired == 10
  assert s1.accuracy == pytest.approx(0.6)
  assert s1.baseline_accuracy == pytest.approx(0.2)
  assert s1.gain_points == pytest.approx(40.0)
  assert s1.gain_rel_pct == pytest.approx(200.0)
  assert (s1.rescue, s1.harm) == (5, 1)
  assert s1.gain_ci_low <= 40.0 <= s1.gain_ci_high
  assert s1.teacher_fraction == pytest.approx(0.25)
  assert s1.mean_switches == pytest.approx(1.0)
  assert s1.leakage_rate == pytest.approx(0.1)  # p3 only; p4's "1<answer>" is a different number
  assert s1.step_k == 1
  assert s1.teacher == "teacher-big" and s1.checkpoint is None

  s2 = one(s, "step:2")
  assert s2.accuracy == pytest.approx(0.3) and s2.gain_points == pytest.approx(10.0)
  assert s2.gain_rel_pct == pytest.approx(50.0) and (s2.rescue, s2.harm) == (1, 0) and s2.step_k == 2

  always = one(s, "always")
  assert always.accuracy == 1.0 and always.teacher_fraction == 1.0 and always.leakage_rate == 1.0
  assert (always.rescue, always.harm) == (8, 0) and math.isnan(always.step_k)


def test_summarize_pairs_by_seed_and_separates_students() -> None:
  rows = []
  for seed in (0, 1):
    for i in range(4):
      # Baseline right on p0 only for seed 0, on p0 and p1 for seed 1.
      rows.append(row("never", i, i == 0 or (seed == 1 and i == 1), seed=seed, row_id=f"n{seed}{i}"))
      rows.append(row("step:1", i, i <= 1, seed=seed, row_id=f"s{seed}{i}"))
  rows.append(row("never", 0, False, student="student-tiny", row_id="tiny-n"))
  rows.append(row("step:1", 0, True, student="student-tiny", row_id="tiny-s"))
  s = analysis.summarize(pd.DataFrame(rows), n_boot=200)
  small = one(s, "step:1", student="student-small")
  assert small.n == 8 and small.n_problems == 4 and small.n_paired == 8
  assert (small.rescue, small.harm) == (1, 0)  # only seed 0's p1 changes
  assert small.gain_points == pytest.approx(100 * 1 / 8)
  tiny = one(s, "step:1", student="student-tiny")
  assert (tiny.n, tiny.rescue, tiny.harm, tiny.gain_points) == (1, 1, 0, 100.0)
  assert math.isnan(tiny.gain_rel_pct)  # baseline accuracy 0: relative gain undefined


def test_teacherless_never_rows_serve_as_baseline() -> None:
  rows = [row("never", i, i in CORRECT["never"], teacher=None) for i in range(N)]
  rows += [row("step:1", i, i in CORRECT["step:1"]) for i in range(N)]
  s = analysis.summarize(pd.DataFrame(rows), n_boot=200)
  assert one(s, "never").teacher is None
  s1 = one(s, "step:1")
  assert s1.n_paired == 10 and s1.gain_points == pytest.approx(40.0) and (s1.rescue, s1.harm) == (5, 1)


def test_unpaired_rows_have_no_gain() -> None:
  s = analysis.summarize(pd.DataFrame([row("step:1", i, True) for i in range(3)]), n_boot=50)
  r = one(s, "step:1")
  assert r.n_paired == 0 and r.accuracy == 1.0 and math.isnan(r.gain_points) and r.rescue == 0


def test_leakage_not_measured_without_teacher_text() -> None:
  rows = [{k: v for k, v in r.items() if k != "teacher_text"} for r in make_rows()]
  s = analysis.summarize(pd.DataFrame(rows), n_boot=50)
  assert s.leakage_rate.isna().all() and one(s, "step:1").gain_points == pytest.approx(40.0)


def test_summarize_requires_columns() -> None:
  with pytest.raises(UserError, match="correct"):
    analysis.summarize(
      pd.DataFrame([{"task": "t", "student": "s", "policy": "never", "problem_id": "p", "answer": "1"}])
    )


def test_checkpoints_in_natural_order() -> None:
  rows = [row("never", 0, True, checkpoint=c, row_id=c) for c in ("step_10000", "step_2000", None)]
  assert analysis.checkpoints_of(pd.DataFrame(rows)) == ["step_2000", "step_10000"]


def test_not_measured_is_none_at_the_source_and_a_float_nan_in_the_table() -> None:
  # make_rows carry no gold_steps: the no-leak columns are not measured (None) for every group.
  rows = [{k: v for k, v in r.items() if k != "teacher_text"} for r in make_rows()]
  g = analysis.prepare(pd.DataFrame(rows))
  assert no_leak_columns(g, 1, n_boot=10, seed=0) == dict.fromkeys(NO_LEAK_COLUMNS)
  s = analysis.summarize(pd.DataFrame(rows), n_boot=20)
  for col in ("leakage_rate", "exemplar_copy_rate", "accuracy_no_leak", "gain_no_leak_ci_high"):
    assert s[col].dtype == np.float64 and s[col].isna().all(), col  # one dtype, whatever is measured
  assert s.n_no_leak.isna().all()


def test_paired_difference_of_one_unit_and_of_none() -> None:
  from experiments.report.stats import paired_difference

  # One unit: its difference is the mean and every resample (the CI is the point); none: not defined.
  assert paired_difference(np.array([1.0]), np.array([0.0]), ["p0"], 100, 0) == (1, 100.0, 100.0, 100.0)
  n, diff, low, high = paired_difference(np.array([]), np.array([]), [], 100, 0)
  assert n == 0 and all(math.isnan(x) for x in (diff, low, high))
  # Its CI is the paired bootstrap's with the given resamples and seed, in points.
  first, later = np.array([1.0, 0, 1, 1, 0, 1, 0, 1]), np.array([0.0, 0, 1, 0, 1, 0, 0, 0])
  groups = ["a", "a", "b", "c", "d", "e", "f", "g"]
  low, high = analysis.paired_bootstrap_ci(first, later, n_boot=7, seed=3, groups=groups)
  assert paired_difference(first, later, groups, 7, 3) == (8, 37.5, 100 * low, 100 * high)
  assert (low, high) != analysis.paired_bootstrap_ci(first, later, n_boot=2000, seed=3, groups=groups)


def test_gain_ci_is_the_paired_bootstrap_with_the_given_resamples() -> None:
  df = pd.DataFrame(make_rows())
  s = one(analysis.summarize(df, n_boot=7, seed=3), "step:1")
  base = [float(i in CORRECT["never"]) for i in range(N)]
  pol = [float(i in CORRECT["step:1"]) for i in range(N)]
  low, high = analysis.paired_bootstrap_ci(pol, base, n_boot=7, seed=3, groups=[f"p{i}" for i in range(N)])
  assert (s.gain_ci_low, s.gain_ci_high) == (100 * low, 100 * high)
  assert (low, high) != analysis.paired_bootstrap_ci(pol, base, n_boot=2000, seed=3)


def test_bootstrap_of_one_resample_and_of_many_groups() -> None:
  # One resample of one group holding both pairs: the CI is that resample's mean, +0.5.
  assert analysis.paired_bootstrap_ci([1, 1], [0, 1], n_boot=1, seed=0, groups=["a", "a"]) == (0.5, 0.5)
  # More groups than one chunk of resamples holds (2_000_000 // 2500 = 800 rows a chunk): every
  # resample is still drawn, and the same seed gives the same CI.
  rng = np.random.default_rng(2)
  pol, base = rng.random(2500) < 0.5, rng.random(2500) < 0.5
  low, high = analysis.paired_bootstrap_ci(pol, base, n_boot=2000, seed=0)
  assert low < pol.mean() - base.mean() < high
  assert (low, high) == analysis.paired_bootstrap_ci(pol, base, n_boot=2000, seed=0)

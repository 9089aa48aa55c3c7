"""analysis (loading, policies, stats, summary, answer checks) on hand-built rows whose every number
is known in advance; the timing analyses are in test_timing_analysis.py."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from analysis_rows import CORRECT, N, make_rows, one, row

from experiments.report import analysis
from model.errors import UserError

# --------------------------------------------------------------------------- policies


@pytest.mark.parametrize(
  "policy,k",
  [
    ("step:1", 1),
    ("step:3", 3),
    ("step:2,n=1", 2),
    (" STEP:4 ", 4),  # parse_policy's spelling rules
    ("step:2,n=3", None),  # several steps
    ("step:2,m=3", None),  # part of step 2: the same policy as hint:2,m=3
    ("hint:1,m=3", None),
    ("hint:2", None),
    ("never", None),
    ("always", None),
    ("entropy:0.5", None),
    ("random:0.2,budget=1", None),
  ],
)
def test_intervention_step(policy: str, k: int | None) -> None:
  assert analysis.intervention_step(policy) == k


@pytest.mark.parametrize(
  "policy", ["step:", "step:x", "step:0", "step:1,n=two", "step:4,budget=2", "entropy:abc", "bogus", ""]
)
def test_malformed_policy_is_an_error_naming_it(policy: str) -> None:
  # decode.core.policy.parse_policy is the one grammar: whatever it rejects, the report rejects.
  for parse in (analysis.intervention_step, analysis.policy_sort_key):
    with pytest.raises(ValueError, match=re.escape(f"malformed policy {policy!r} in the results")):
      parse(policy)


def test_summarize_names_a_malformed_policy() -> None:
  rows = [row("never", 0, True), row("step:two", 0, True, row_id="bad")]
  with pytest.raises(ValueError, match="malformed policy 'step:two'"):
    analysis.summarize(pd.DataFrame(rows), n_boot=10)


def test_policy_sort_order() -> None:
  policies = ["always", "step:10", "entropy:0.5", "step:2", "never", "step:1"]
  assert sorted(policies, key=analysis.policy_sort_key) == [
    "never",
    "step:1",
    "step:2",
    "step:10",
    "entropy:0.5",
    "always",
  ]


def test_policy_sort_order_within_families() -> None:
  policies = [
    "random:0.2",
    "always",
    "step:2,m=3",
    "margin:1",
    "entropy:0.5",
    "step:2,n=3",
    "maxprob:0.3",
    "hint:1,m=3",
    "entropy:0.5,budget=2",
    "step:2",
    "entropy:0.25",
    "never",
  ]
  assert sorted(policies, key=analysis.policy_sort_key) == [
    "never",
    "step:2",
    "step:2,n=3",
    "hint:1,m=3",
    "step:2,m=3",  # a hint: the teacher writes 3 tokens of step 2
    "entropy:0.25",
    "entropy:0.5,budget=2",
    "entropy:0.5",  # no budget: unlimited, after every budget
    "maxprob:0.3",
    "margin:1",
    "random:0.2",
    "always",
  ]


# --------------------------------------------------------------------------- leakage


@pytest.mark.parametrize(
  "text,answer,leaked",
  [
    ("<<48/2=24>> so 24 cookies", "24", True),
    ("she has 124 apples", "24", False),
    ("he paid 2.45 dollars", "24", False),
    ("the price is 24.0 now", "24", True),
    ("about 1,024 people", "24", False),
    ("about 1,024 people", "1024", True),
    ("$24.", "24", True),
    ("x = -5 degrees", "-5", True),
    ("10-5=5", "-5", False),
    ("0.5 of the cake", "5", False),
    ("", "24", False),
    ("a 24 b", "24", True),
    ("the answer is many", "many", True),  # non-numeric gold: whole-token text match
    ("the answer is manymore", "many", False),
  ],
)
def test_answer_leaked_matches_whole_numbers(text: str, answer: str, leaked: bool) -> None:
  assert analysis.answer_leaked(text, answer) is leaked


# Where the old leakage grammar disagreed with scoring; now a number is in the text exactly when
# scoring would read the same value there (answers.numbers_in + answers.answers_match).
@pytest.mark.parametrize(
  "text,answer,leaked",
  [
    ("she paid 1000 dollars", "$1,000", True),  # was False: "$1,000" gold was matched as text
    ("she paid $1,000", "1000", True),
    ("a discount of 50 percent", "50%", True),  # was False: "50%" gold was matched as text
    ("a 50% discount", "50", True),
    ("she ate 3/4 of the pie", "0.75", True),  # was False: 3/4 was read as 3 and 4
    ("she ate 3/4 of the pie", "3", False),  # was True
    ("she ate 3/4 of the pie", "4", False),  # was True
    ("0.75 of the pie", "3/4", True),  # was False: "3/4" gold was matched as text
    ("it fell to \u22125 degrees", "-5", True),  # was False: the unicode minus was dropped
    ("it fell to \u22125 degrees", "5", False),  # was True
    ("costs 2.50 each", "2.5", True),
    ("costs 2.5 each", "2.50", True),
    ("sold 1,000, then 2,000", "1000", True),  # was False: "1,000," was read as 1 and 0
    (".5 of the cake", "0.5", True),  # was False: a leading "." hid the number
    ("<<48/2=24>>", "48", False),  # was True: scoring reads 48/2 as one number, 24
    ("a24b", "24", True),  # was False: scoring reads 24 in "a24b"
  ],
)
def test_answer_leaked_reads_numbers_as_scoring_does(text: str, answer: str, leaked: bool) -> None:
  assert analysis.answer_leaked(text, answer) is leaked


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
  with pytest.raises(ValueError):
    analysis.paired_bootstrap_ci([1, 0], [1], n_boot=10, seed=0)


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


# --------------------------------------------------------------------------- loading


def write_lines(path: Path, rows: list[dict[str, Any]], tail: str = "") -> None:
  path.write_text("".join(json.dumps(r) + "\n" for r in rows) + tail)


def test_load_merges_files_and_drops_duplicate_row_ids(tmp_path: Path) -> None:
  rows = make_rows()
  write_lines(tmp_path / "results.jsonl", rows[:25])
  dup = dict(rows[20], completion="second copy")  # same row_id, later file: must lose
  write_lines(tmp_path / "results-1.jsonl", [dup] + rows[25:])
  write_lines(tmp_path / "results-2.jsonl", rows[30:32])  # exact duplicates of results-1 rows
  df = analysis.load_results(tmp_path)
  assert len(df) == len(rows) and df.row_id.is_unique
  assert df.set_index("row_id").loc[rows[20]["row_id"], "completion"] == "..."
  pd.testing.assert_frame_equal(
    analysis.summarize(df, n_boot=100), analysis.summarize(pd.DataFrame(rows), n_boot=100)
  )


def test_load_tolerates_truncated_final_line(tmp_path: Path) -> None:
  rows = make_rows()[:3]
  write_lines(tmp_path / "results.jsonl", rows, tail='{"row_id": "killed", "task": "synt')
  with pytest.warns(UserWarning, match="truncated final line 4"):
    df = analysis.load_results(tmp_path)
  assert list(df.row_id) == [r["row_id"] for r in rows]


def test_load_keeps_complete_final_line_without_newline(tmp_path: Path) -> None:
  rows = make_rows()[:3]
  write_lines(tmp_path / "results.jsonl", rows[:2], tail=json.dumps(rows[2]))
  assert len(analysis.load_results(tmp_path)) == 3


def test_load_rejects_corrupt_middle_line(tmp_path: Path) -> None:
  rows = make_rows()[:3]
  path = tmp_path / "results-1.jsonl"
  path.write_text(json.dumps(rows[0]) + "\n" + '{"row_id": "bad", \n' + json.dumps(rows[2]) + "\n")
  with pytest.raises(ValueError, match=r"results-1\.jsonl: corrupt line 2"):
    analysis.load_results(tmp_path)


def test_load_rejects_corrupt_final_line_with_newline(tmp_path: Path) -> None:
  write_lines(tmp_path / "results.jsonl", make_rows()[:1], tail='{"row_id": \n')
  with pytest.raises(ValueError, match="corrupt line 2"):
    analysis.load_results(tmp_path)


def test_load_without_results_raises(tmp_path: Path) -> None:
  with pytest.raises(FileNotFoundError, match="no results"):
    analysis.load_results(tmp_path)


# --------------------------------------------------------------------------- few-shot copying


def test_exemplar_copy_rate_against_the_gold_rate() -> None:
  ex = ["5", "7"]
  gold = ["5", "8", "9", "10"]  # p0's gold answer is itself an exemplar answer: gold rate 1/4
  preds = {
    "never": ["5", "7", "7.0", None],  # p0 (right), p1 and p2 (copies, 7.0 == 7): 3/4
    "step:1": ["5", "8", "9", "10"],  # all right; only p0's equals an exemplar answer: 1/4
  }
  rows = [
    row(p, i, pred == gold[i], answer=gold[i], prediction=pred, exemplar_answers=ex, row_id=f"{p}{i}")
    for p, ps in preds.items()
    for i, pred in enumerate(ps)
  ]
  rows += [row("never", i, False, student="zero-shot", exemplar_answers=[], row_id=f"z{i}") for i in range(2)]
  rows += [row("never", i, False, student="old", row_id=f"o{i}") for i in range(2)]  # no exemplar_answers key
  s = analysis.summarize(pd.DataFrame(rows), n_boot=20)
  never = one(s, "never", student="student-small")
  assert never.exemplar_copy_rate == pytest.approx(0.75) and never.gold_exemplar_rate == pytest.approx(0.25)
  s1 = one(s, "step:1")
  assert s1.exemplar_copy_rate == pytest.approx(0.25) and s1.gold_exemplar_rate == pytest.approx(0.25)
  for student in ("zero-shot", "old"):
    r = one(s, "never", student=student)
    assert math.isnan(r.exemplar_copy_rate) and math.isnan(r.gold_exemplar_rate)

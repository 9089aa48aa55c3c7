"""report.py writes every promised file, with honest wording, from results files on disk; the CLI is
in test_report_cli.py."""

from __future__ import annotations

import io
from pathlib import Path

import pandas as pd
import pytest
from report_rows import FIRST_STEP_WINS, LATER_STEP_WINS, N, check_png, rows_for, write_results

from experiments.report import analysis
from experiments.report import writer as report


def test_write_report_from_results_files(tmp_path: Path) -> None:
  rows = rows_for("student-small", FIRST_STEP_WINS) + rows_for("student-tiny", LATER_STEP_WINS)
  write_results(tmp_path, rows)
  paths = report.write_report(tmp_path)

  assert set(paths) == {
    "summary",
    "report",
    "accuracy_vs_step",
    "accuracy_vs_teacher_fraction",
    "counterfactuals",
    "earliest_rescue",
  }
  assert all(p.exists() and p.parent == tmp_path for p in paths.values())
  assert not (tmp_path / report.PLOT_CHECKPOINTS).exists()  # one (missing) checkpoint label only
  assert not list(tmp_path.glob("*.tmp")) and not list(tmp_path.glob(".*"))  # atomic: no leftovers
  for name in (report.PLOT_STEP, report.PLOT_FRACTION, report.PLOT_RESCUE):
    check_png(tmp_path / name)

  csv = pd.read_csv(paths["summary"])
  expected = analysis.summarize(pd.DataFrame(rows))
  assert list(csv.columns) == analysis.SUMMARY_COLUMNS and len(csv) == len(expected)
  s1 = csv[(csv.student == "student-small") & (csv.policy == "step:1")].iloc[0]
  assert s1.gain_points == pytest.approx(40.0) and (s1.rescue, s1.harm) == (5, 1)

  text = paths["report"].read_text()
  for student in ("student-small", "student-tiny"):
    assert student in text
  assert f"]({report.PLOT_STEP})" in text and f"]({report.PLOT_FRACTION})" in text
  # step:1 - step:2 is +30 [-10, +70] for student-small: the paired CI does not exclude 0, so the
  # finding may not call step 1 the best timing (this test asserted "Step 1 is the best timing" when
  # the verdict came from marginal CIs). For student-tiny, -30 [-60, -10]: step 2 is better.
  assert (
    "Step 1 gains most in this sample: +40.0 points vs at most +10.0 for a later step (`step:2`). Paired "
    "over the 10 (seed, problem) units that ran both, step:1 - step:2 is +30.0 points (95% CI [-10.0, "
    "+70.0]): this sample does not separate them."
  ) in text  # student-small
  assert "Step 1 is the best timing" not in text
  assert (
    "Step 1 is NOT the best timing here: `step:2` gains +40.0 points vs +10.0 for `step:1`. Paired over "
    "the 10 (seed, problem) units that ran both, step:1 - step:2 is -30.0 points (95% CI [-60.0, -10.0]): "
    "Step 2 is better."
  ) in text  # student-tiny
  assert "Best guided policy: `step:1` at 60.0%" in text
  assert (
    "| synthetic | student-small | teacher-big | - | `step:1` | 10 | 5 | 1 | +4 |" in text
  )  # rescue/harm row
  assert (
    "Excluding `always` (where the teacher writes the final answer by design): 0 of 60 (0.0%). "
    "So the guided gains are not the teacher handing over the answer."
  ) in text


def test_rows_without_new_fields_report_not_measured(tmp_path: Path) -> None:
  # FIRST_STEP_WINS rows carry neither gold_steps nor exemplar_answers, as older results files.
  write_results(tmp_path, rows_for("student-small", FIRST_STEP_WINS))
  paths = report.write_report(tmp_path)
  csv = pd.read_csv(paths["summary"])
  assert csv.n_no_leak.isna().all() and csv.gain_no_leak_points.isna().all()
  assert csv.exemplar_copy_rate.isna().all()
  text = paths["report"].read_text()
  assert "No row records `gold_steps`" in text and "gains without leakage are not measured" in text
  assert "copying from the few-shot prompt is not measured" in text


GOLD_STEPS = [1, 2, 3, 1, 2, 3, 1, 2, 3, 1]


def test_no_leak_counterfactual_and_copy_sections(tmp_path: Path) -> None:
  rows = rows_for("student-small", FIRST_STEP_WINS)
  for r in rows:
    i = int(r["problem_id"][1:])
    r["gold_steps"] = GOLD_STEPS[i]
    r["exemplar_answers"] = ["0", "50"]
    r["prediction"] = r["answer"] if r["correct"] else "0"  # every wrong row copies exemplar answer 0
  paths = report.write_report(tmp_path, df=pd.DataFrame(rows))

  csv = pd.read_csv(paths["summary"])
  assert list(csv.columns) == analysis.SUMMARY_COLUMNS
  s1 = csv[csv.policy == "step:1"].iloc[0]
  # Gold steps > 1: p1 p2 p4 p5 p7 p8; step:1 right on p1 p2 p4 p5, the student alone on p1.
  assert s1.n_no_leak == 6 and s1.accuracy_no_leak == pytest.approx(4 / 6)
  assert s1.gain_no_leak_points == pytest.approx(50.0)
  assert s1.gain_no_leak_ci_low <= 50.0 <= s1.gain_no_leak_ci_high
  assert pd.isna(csv[csv.policy == "never"].n_no_leak.iloc[0])

  cf = pd.read_csv(paths["counterfactuals"])
  pd.testing.assert_frame_equal(
    cf, pd.read_csv(io.StringIO(analysis.counterfactuals(pd.DataFrame(rows)).to_csv(index=False)))
  )
  assert list(cf.step_1) == ["harm", "right", *["rescue"] * 5, *["wrong"] * 3]
  check_png(paths["earliest_rescue"])

  text = paths["report"].read_text()
  timing = text[text.index("## Timing without leakage") : text.index("## Per-problem counterfactuals")]
  assert "With leakage possible (all problems): `step:1` gains most, +40.0 points" in timing
  assert "Without leakage (each `step:K` on its own leak-free rows): `step:1` gains most" in timing
  assert "The same timing wins either way." in timing
  # step:1 - step:2 per problem: -1 (p0), +1 (p3..p6): +30 on all 10; on p2 p5 p8 (gold > 2): +33.3.
  assert (
    "| 2 | 10 | +30.0 | [-10.0, +70.0] | not separated | 3 | +33.3 | [+0.0, +100.0] | not separated |"
    in timing
  )
  assert "| `step:1` | 10 | +40.0 |" in timing and "| 6 | 66.7% | +50.0 |" in timing
  counterfactual = text[text.index("## Per-problem counterfactuals") : text.index("## Few-shot")]
  # 8 failures (p2..p9): step 1 rescues p2..p6 first; step:2 and step:3 rescue nothing new.
  assert (
    "| synthetic | student-small | teacher-big | - | 8 | 5 (62%) | 0 (0%) | 0 (0%) | 3 (38%) |"
    in counterfactual
  )
  assert (
    "- student-small: of 8 failures, 5 first rescued at step 1, 0 only by a later step, 3 by no swept step."
    in counterfactual
  )
  copying = text[text.index("## Few-shot answer copying") :]
  # Wrong rows predict "0", an exemplar answer; no gold answer (100..109) is one.
  assert "| synthetic | student-small | teacher-big | - | `never` | 10 | 80.0% | 0.0% |" in copying
  assert "| `step:1` | 10 | 40.0% | 0.0% |" in copying
  assert "**Warning**: student-small predicts one of its prompt's exemplar answers too often" in copying
  assert "80.0% under `never`, 40.0% under `step:1`" in copying
  assert "`entropy:2.0`" in copying and "60.0% under `entropy:2.0`" in copying
  assert "under `always`" not in copying  # the teacher writes everything: 0% copies


def test_clear_timing_differences_are_said(tmp_path: Path) -> None:
  rows = rows_for("first-wins", {"never": [], "step:1": range(N), "step:3": []})
  rows += rows_for("second-wins", {"never": [], "step:1": [], "step:2": range(N)})
  for r in rows:
    r["gold_steps"] = 4  # every problem is leak-free for K <= 3
  text = report.write_report(tmp_path, df=pd.DataFrame(rows))["report"].read_text()
  # A constant per-problem difference: every resample gives it, so the CI is the point.
  assert (
    "| 3 | 10 | +100.0 | [+100.0, +100.0] | step 1 better | 10 | +100.0 | [+100.0, +100.0] | step 1 better |"
  ) in text
  assert "Without leakage, step 1 beats every later step compared (`step:3`): all 95% CIs above 0." in text
  assert "| 2 | 10 | -100.0 | [-100.0, -100.0] | step 2 better |" in text
  assert "Without leakage, step 1 beats no later step clearly; `step:2` beats step 1." in text
  assert "- Without leakage (each `step:K` on its own leak-free rows): `step:2` gains most" in text


def test_copy_warning_needs_a_rate_clearly_above_the_gold_rate(tmp_path: Path) -> None:
  rows = rows_for("student-small", {"never": {0, 1, 2, 3, 4, 5}, "step:1": range(N)})
  for r in rows:  # gold answers 100..109: 100 102 104 are exemplar answers too
    r["exemplar_answers"] = ["100", "102", "104"]
    r["prediction"] = r["answer"] if r["correct"] else "0"
  # never: predicts 100 102 104 (right) -> copy 30%, gold 30%: not above the gold rate, no warning.
  text = report.write_report(tmp_path, df=pd.DataFrame(rows))["report"].read_text()
  assert "| `never` | 10 | 30.0% | 30.0% |" in text and "**Warning**" not in text
  assert "No student copies exemplar answers clearly more often" in text
  for r in rows:
    if r["policy"] == "never" and r["problem_id"] in ("p6", "p7"):
      r["prediction"] = "102"  # two wrong rows now copy: 50% vs 30%
  text = report.write_report(tmp_path, df=pd.DataFrame(rows))["report"].read_text()
  assert "| `never` | 10 | 50.0% | 30.0% |" in text
  assert "too often (share of rows: 50.0% under `never`), against 30.0%" in text


def test_leaking_policy_is_flagged(tmp_path: Path) -> None:
  rows = rows_for("student-small", {"never": {0}, "step:1": {0, 1, 2}, "step:2": {0}})
  for r in rows:
    if r["policy"] == "step:1" and r["problem_id"] in ("p1", "p2"):
      r["teacher_text"] = f"So <<{r['answer']}*1={r['answer']}>>.\n"
    if r["policy"] == "step:2":
      r["teacher_text"] = f"Then 1{r['answer']} - 1 = {int('1' + r['answer']) - 1}.\n"  # not the answer
  text = report.write_report(tmp_path, df=pd.DataFrame(rows))["report"].read_text()
  assert "in 2 of 20 rows where the teacher wrote (10.0%)" in text
  assert "may partly be the teacher handing over the answer" in text
  assert "| synthetic | student-small | teacher-big | - | `step:1` | 20.0% |" in text
  assert "`step:2` | 0.0% |" not in text  # only leaking policies are listed


def test_df_argument_and_checkpoint_plot(tmp_path: Path) -> None:
  early = {"never": {0}, "step:1": {0, 1, 2, 3, 4, 5}, "step:2": {0, 1}, "always": range(N)}
  late = {
    "never": {0, 1, 2, 3, 4},
    "step:1": {0, 1, 2, 3, 4, 5},
    "step:2": {0, 1, 2, 3, 4},
    "always": range(N),
  }
  rows = rows_for("student-small", early, checkpoint="step_2000") + rows_for(
    "student-small", late, checkpoint="step_10000"
  )
  paths = report.write_report(tmp_path, df=pd.DataFrame(rows))  # no results files needed
  assert "accuracy_vs_step_by_checkpoint" in paths
  check_png(paths["accuracy_vs_step_by_checkpoint"])
  text = paths["report"].read_text()
  assert f"]({report.PLOT_CHECKPOINTS})" in text
  # The per-checkpoint table shows early guidance mattering less as the student trains.
  assert "| synthetic | student-small | teacher-big | step_2000 | 10.0% | 60.0% | +50.0 |" in text
  assert "| synthetic | student-small | teacher-big | step_10000 | 50.0% | 60.0% | +10.0 |" in text
  assert text.index("step_2000 | 10.0%") < text.index("step_10000 | 50.0%")  # natural order


def test_no_guided_policy_beats_student_is_said(tmp_path: Path) -> None:
  rows = rows_for(
    "student-small", {"never": {0, 1, 2}, "step:1": {0}, "step:2": {0, 1}}, teacher="weak-teacher"
  )
  text = report.write_report(tmp_path, df=pd.DataFrame(rows))["report"].read_text()
  assert "No guided policy beats the student alone here." in text
  # step:1 - step:2 is -10 [-30, 0]: not separated, so step 1 is not called worse (it was before).
  assert "A later step gains more in this sample: `step:2` gains -10.0 points vs -20.0" in text

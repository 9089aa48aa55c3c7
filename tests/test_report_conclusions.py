"""Conclusions report.md states, each on hand-worked rows where a plausible shortcut gives the wrong
answer: verdicts from paired differences (not overlapping marginal CIs), leakage judged on what the
teacher wrote, rows without a correctness value left out and counted, and matched controls whose
realized rate is shown beside their trigger's. The analysis side of the same rules is in
test_analysis_conclusions.py."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from report_rows import rows_for

from experiments.report import analysis
from experiments.report import writer as report
from experiments.report.controls import matched_controls


def section(text: str, heading: str) -> str:
  start = text.index(f"## {heading}\n")
  end = text.find("\n## ", start + 1)
  return text[start : end if end >= 0 else len(text)]


# --------------------------------------------------------------------------- verdicts from paired tests


def test_timing_verdict_is_the_paired_difference_not_overlapping_marginal_cis(tmp_path: Path) -> None:
  # 40 problems; the student alone is always wrong; step 1 is right on p0..p19, step 2 on p0..p13 (all
  # of them step-1 successes). Marginal gains +50 and +35 have overlapping CIs, yet per problem
  # step:1 - step:2 is 1 on six problems and 0 elsewhere: +15 points, 95% CI [+5, +27.5].
  rows = rows_for("s", {"never": [], "step:1": range(20), "step:2": range(14)}, n=40)
  for r in rows:
    r["gold_steps"] = 5  # every row leak-free, so the timing section compares them too
  paths = report.write_report(tmp_path, df=pd.DataFrame(rows))
  csv = pd.read_csv(paths["summary"]).set_index("policy")
  s1, s2 = csv.loc["step:1"], csv.loc["step:2"]
  assert (s1.gain_points, s2.gain_points) == pytest.approx((50.0, 35.0))
  assert s1.gain_ci_low < s2.gain_ci_high  # the marginal CIs overlap: the old verdict's trap
  text = paths["report"].read_text()
  assert "not separated" not in text and "not separate" not in text
  findings = section(text, "Findings")
  assert (
    "- Step 1 is the best timing: +50.0 points vs at most +35.0 for a later step (`step:2`). Paired over "
    "the 40 (seed, problem) units that ran both, step:1 - step:2 is +15.0 points (95% CI [+5.0, +27.5]): "
    "Step 1 is better."
  ) in findings
  timing = section(text, "Timing without leakage")
  assert (
    "| 2 | 40 | +15.0 | [+5.0, +27.5] | step 1 better | 40 | +15.0 | [+5.0, +27.5] | step 1 better |"
    in timing
  )


def test_beating_the_teacher_writing_everything_is_a_paired_verdict(tmp_path: Path) -> None:
  # step:1 right on every problem, always on p0..p8: 100% > 90%, but step:1 - always is 1 on one problem
  # of ten, so its CI reaches 0 and the finding may not say step:1 beats always.
  close = rows_for("close", {"never": [], "step:1": range(10), "always": range(9)})
  clear = rows_for("clear", {"never": [], "step:1": range(10), "always": range(2)})  # +80 [+50, +100]
  text = section(
    report.write_report(tmp_path, df=pd.DataFrame(close + clear))["report"].read_text(), "Findings"
  )
  clear_part, close_part = text.split("### synthetic / student clear")[1].split(
    "### synthetic / student close"
  )
  assert "It beats the teacher writing everything" not in close_part
  assert (
    "Its accuracy is above the teacher writing everything's, but paired over 10 (seed, problem) units, "
    "+10.0 points (95% CI [+0.0, +30.0]): the sample does not separate them."
  ) in close_part
  assert (
    "It beats the teacher writing everything: paired over 10 (seed, problem) units, +80.0 points"
    in clear_part
  )


# --------------------------------------------------------------------------- leakage from the teacher's text


def test_a_step_that_states_the_answer_is_not_counted_as_leak_free(tmp_path: Path) -> None:
  # Four problems with 3 gold steps; the teacher's step 1 ends "= <gold answer>". By gold steps alone
  # step:1 is leak-free (3 > 1) with a no-leak gain of +100 [100, 100]; its text says otherwise.
  rows = rows_for("s", {"never": [], "step:1": range(4), "step:2": []}, n=4)
  for r in rows:
    r["gold_steps"] = 3
    if r["policy"] == "step:1":
      r["teacher_text"] = f"First, 40 + {int(r['answer']) - 40} = {r['answer']}"
  paths = report.write_report(tmp_path, df=pd.DataFrame(rows))
  csv = pd.read_csv(paths["summary"]).set_index("policy")
  s1 = csv.loc["step:1"]
  assert s1.leakage_rate == 1.0 and s1.gain_points == 100.0
  assert s1.n_no_leak == 0 and pd.isna(s1.gain_no_leak_points) and pd.isna(s1.accuracy_no_leak)
  assert csv.loc["step:2"].n_no_leak == 4  # its text ("2 * 3 = 6") states no answer: kept
  timing = section(paths["report"].read_text(), "Timing without leakage")
  assert "| `step:1` | 4 | +100.0 | [+100.0, +100.0] | 0 | n/a | n/a | n/a |" in timing
  assert "the teacher's text does not state the gold answer" in timing  # the intro says the rule


def test_the_no_leak_curve_on_one_common_set_is_reported(tmp_path: Path) -> None:
  # Gold steps 1, 2 or 3; step:1 and step:2 swept, so the common set is the problems with 3 gold
  # steps (p2 p5 p8) where no step:K text states the answer. step:2's text states it on p5: p2 p8 remain.
  gold = [1, 2, 3, 1, 2, 3, 1, 2, 3, 1]
  rows = rows_for("s", {"never": {0, 1}, "step:1": {1, 2, 3, 4, 5, 6}, "step:2": {0, 1, 2}})
  for r in rows:
    r["gold_steps"] = gold[int(r["problem_id"][1:])]
    if r["policy"] == "step:2" and r["problem_id"] == "p5":
      r["teacher_text"] = f"So it is {r['answer']}."
  paths = report.write_report(tmp_path, df=pd.DataFrame(rows))
  csv = pd.read_csv(paths["summary"]).set_index("policy")
  for policy in ("step:1", "step:2"):  # right on p2, not p8; the student alone on neither
    r = csv.loc[policy]
    assert (r.no_leak_common_k, r.n_no_leak_common, r.accuracy_no_leak_common) == (2, 2, 0.5)
    assert r.gain_no_leak_common_points == 50.0
  assert (csv.loc["step:1"].n_no_leak, csv.loc["step:2"].n_no_leak) == (6, 2)  # per-K sets differ
  timing = section(paths["report"].read_text(), "Timing without leakage")
  assert "The curve on one common set: 2 (seed, problem) units with more than 2 gold steps" in timing
  assert "| `step:1` | 2 | 50.0% | +50.0 |" in timing and "| `step:2` | 2 | 50.0% | +50.0 |" in timing
  assert "- On one common set (2 units with more than 2 gold steps and no leak in any `step:K` row)" in timing


# --------------------------------------------------------------------------- honest denominators


def rows_with_unscored() -> list[dict[str, Any]]:
  """never wrong on p2..p9 with p9 unscored; step:1 with p7 unscored (NaN) and p8 stopped by an error."""
  rows = rows_for("s", {"never": {0, 1}, "step:1": {1, 2, 3, 4, 5, 6, 8}})
  for r in rows:
    if r["policy"] == "never" and r["problem_id"] == "p9":
      r["correct"] = None
    if r["policy"] == "step:1" and r["problem_id"] == "p7":
      r["correct"] = float("nan")
    if r["policy"] == "step:1" and r["problem_id"] == "p8":
      r["correct"], r["error"] = False, "non-finite logits at position 3"  # as the sweep writes it
  return rows


def test_rows_without_a_correctness_value_are_left_out_and_counted(tmp_path: Path) -> None:
  paths = report.write_report(tmp_path, df=pd.DataFrame(rows_with_unscored()))
  csv = pd.read_csv(paths["summary"]).set_index("policy")
  s1 = csv.loc["step:1"]
  # Scored: p0..p6 and p9; right on p1..p6. Paired (the never row scored too): p0..p6.
  assert (s1.n, s1.n_unscored, s1.n_errors, s1.n_paired) == (8, 2, 1, 7)
  assert s1.accuracy == 6 / 8 and s1.paired_accuracy == pytest.approx(6 / 7)
  assert s1.baseline_accuracy == pytest.approx(2 / 7) and s1.gain_points == pytest.approx(400 / 7)
  text = paths["report"].read_text()
  data = section(text, "Data")
  assert "3 of 20 rows carry no correctness value" in data
  assert "| synthetic | s | teacher-big | - | `step:1` | 8 | 2 | 1 |" in data
  assert "| synthetic | s | teacher-big | - | `never` | 9 | 1 | 0 |" in data
  # Accuracy over 8 rows, gain over 7: both stated where they stand together.
  assert "| `step:1` | 8 | 75.0% (85.7% on 7 paired) | +57.1 |" in section(text, "Summary")
  assert (
    "Best guided policy: `step:1` at 75.0% (on the 7 of 8 rows paired with the student alone: 85.7%, "
    "gain +57.1 points"
  ) in text


# --------------------------------------------------------------------------- matched controls


def control_rows(control_teacher_steps: list[int]) -> list[dict[str, Any]]:
  """never wrong; the trigger right on all ten problems, teacher writing 2 of 4 step starts; its matched
  random control right on none, teacher writing `control_teacher_steps` of 4."""
  rows = rows_for("s", {"never": [], "entropy:q=0.5": range(10), "random:0.5": []})
  for r in rows:
    r["step_ids"] = [1, 1, 2, 3, 4]
    r["intervention_steps"] = {"never": [], "entropy:q=0.5": [2, 4]}.get(r["policy"], control_teacher_steps)
    if r["policy"] == "random:0.5":
      r["matched_to"] = "entropy:q=0.5"
  return rows


def test_a_control_shows_its_realized_rate_beside_its_triggers(tmp_path: Path) -> None:
  paths = report.write_report(tmp_path, df=pd.DataFrame(control_rows([1, 3])))
  csv = pd.read_csv(paths["summary"]).set_index("policy")
  ctrl = csv.loc["random:0.5"]
  assert ctrl.matched_to == "entropy:q=0.5" and ctrl.matched_trigger_rate == 0.5 and ctrl.realized_rate == 0.5
  assert (
    not ctrl.listed and "| `random:0.5` (matched to `entropy:q=0.5`) | 10 |" in paths["report"].read_text()
  )
  assert pd.isna(csv.loc["entropy:q=0.5"].matched_to) and pd.isna(
    csv.loc["entropy:q=0.5"].matched_trigger_rate
  )
  controls = section(paths["report"].read_text(), "Matched-rate controls")
  assert (
    "| s | `entropy:q=0.5` | `random:0.5` | 50.0% | 50.0% | 10 | 100.0% | 0.0% | +100.0 [+100.0, +100.0] "
    "| trigger better |"
  ) in controls


def test_a_control_of_a_listed_spec_is_one_summary_row_counting_each_unit_once(tmp_path: Path) -> None:
  """The config lists random:0.5 and the matched controls of two triggers are random:0.5 too: the same
  decode on each of the ten units, three rows each. One summary row, n = 10 (not 30), says both."""
  rows = control_rows([2, 4])
  for r in [r for r in rows if r["policy"] == "entropy:q=0.5"]:
    rows.append(dict(r, row_id=r["row_id"].replace("entropy", "maxprob"), policy="maxprob:q=0.5"))
  for r in [r for r in rows if r["policy"] == "random:0.5"]:
    rows.append(dict(r, row_id=r["row_id"] + "@maxprob", matched_to="maxprob:q=0.5"))
    rows.append(dict(r, row_id=r["row_id"] + "-listed", matched_to=None))
  paths = report.write_report(tmp_path, df=pd.DataFrame(rows))
  csv = pd.read_csv(paths["summary"]).set_index("policy")
  ctrl = csv.loc["random:0.5"]  # one row: loc of a duplicated index would be a frame
  assert (ctrl.n, ctrl.n_paired, ctrl.accuracy, ctrl.realized_rate) == (10, 10, 0.0, 0.5)
  assert ctrl.listed and ctrl.matched_to == "entropy:q=0.5;maxprob:q=0.5"
  assert csv.loc["entropy:q=0.5"].listed and pd.isna(csv.loc["entropy:q=0.5"].matched_to)
  text = paths["report"].read_text()
  assert "| `random:0.5` (listed; also matched to `entropy:q=0.5`, `maxprob:q=0.5`) | 10 |" in section(
    text, "Summary"
  )
  controls = section(text, "Matched-rate controls")  # each trigger against the control on its ten units
  for trigger in ("entropy:q=0.5", "maxprob:q=0.5"):
    assert f"| s | `{trigger}` | `random:0.5` | 50.0% | 50.0% | 10 | 100.0% | 0.0% |" in controls
  (vs,) = (
    analysis.versus_reference(pd.DataFrame(rows + rows_for("s", {"always": range(10)})), n_boot=10)
    .query("policy == 'random:0.5'")
    .itertuples()
  )
  assert vs.n == 10


def test_a_control_whose_rate_strays_is_flagged(tmp_path: Path) -> None:
  paths = report.write_report(tmp_path, df=pd.DataFrame(control_rows([1])))  # 1 of 4: 25%
  ctrl = pd.read_csv(paths["summary"]).set_index("policy").loc["random:0.5"]
  assert ctrl.realized_rate == 0.25 and ctrl.matched_trigger_rate == 0.5
  controls = section(paths["report"].read_text(), "Matched-rate controls")
  assert "| 50.0% | 25.0% | 10 |" in controls
  assert "| trigger better; rates differ by -25.0 points: not matched |" in controls
  # The analysis table the section reads: rates over the compared units.
  (row,) = matched_controls(analysis.prepare(pd.DataFrame(control_rows([1]))), n_boot=100).itertuples()
  assert (row.trigger_rate, row.control_rate, row.n) == (0.5, 0.25, 10)

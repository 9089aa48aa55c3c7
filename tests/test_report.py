"""report.py writes every promised file, with honest wording, from results files on disk."""

from __future__ import annotations

import io
import json
import struct
import subprocess
import sys
from pathlib import Path
from typing import Any, Iterable

import pandas as pd
import pytest

from experiments import files
from experiments.report import analysis
from experiments.report import writer as report

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
N = 10


def rows_for(
  student: str,
  correct: dict[str, Iterable[int]],
  checkpoint: str | None = None,
  teacher: str | None = "teacher-big",
) -> list[dict[str, Any]]:
  """One row per (policy, problem); `correct` lists the problems each policy gets right."""
  out = []
  for policy, right in correct.items():
    right = set(right)
    tt = 0 if policy == "never" else 20 if policy == "always" else 5
    for i in range(N):
      out.append(
        dict(
          row_id=f"{student}|{checkpoint}|{policy}|0|p{i}",
          task="synthetic",
          problem_id=f"p{i}",
          student=student,
          teacher=teacher,
          checkpoint=checkpoint,
          policy=policy,
          seed=0,
          completion="...",
          prediction=str(i) if i in right else "0",
          answer=str(100 + i),
          correct=i in right,
          student_tokens=20 - tt,
          teacher_tokens=tt,
          teacher_prefilled=0,
          switches=0 if policy in ("never", "always") else 1,
          intervention_steps=[] if policy == "never" else [1],
          num_steps=3,
          teacher_text=""
          if policy == "never"
          else f"The answer is {100 + i}."
          if policy == "always"
          else "First, 2 * 3 = 6.\n",
        )
      )
  return out


FIRST_STEP_WINS = {
  "never": {0, 1},
  "step:1": {1, 2, 3, 4, 5, 6},
  "step:2": {0, 1, 2},
  "step:3": {0, 1},
  "entropy:2.0": {0, 1, 2, 3},
  "always": range(N),
}
LATER_STEP_WINS = {"never": {0}, "step:1": {0, 1}, "step:2": {0, 1, 2, 3, 4}, "always": range(N)}


def write_results(out: Path, rows: list[dict[str, Any]], split: int = 2) -> None:
  """Spread rows over results.jsonl, results-1.jsonl, ... as parallel writers would."""
  for k in range(split):
    name = "results.jsonl" if k == 0 else f"results-{k}.jsonl"
    (out / name).write_text("".join(json.dumps(r) + "\n" for r in rows[k::split]))


def check_png(path: Path) -> None:
  data = path.read_bytes()
  assert data[:8] == PNG_SIGNATURE
  width, height = struct.unpack(">II", data[16:24])  # IHDR
  assert width > 200 and height > 200 and len(data) > 10_000


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
  assert "Step 1 is the best timing: +40.0 points" in text  # student-small
  assert "Step 1 is NOT the best timing here: `step:2` gains +40.0 points vs +10.0" in text  # student-tiny
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
  assert (
    "Without leakage (each `step:K` on problems with more than K gold steps): `step:1` gains most" in timing
  )
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
  assert (
    "- Without leakage (each `step:K` on problems with more than K gold steps): `step:2` gains most" in text
  )


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
  assert "Step 1 is NOT the best timing here" in text


def test_cli_regenerates_report(tmp_path: Path) -> None:
  write_results(tmp_path, rows_for("student-small", FIRST_STEP_WINS), split=3)
  assert report.main([str(tmp_path)]) == 0
  first = (tmp_path / "report.md").read_text()
  (tmp_path / "report.md").unlink()
  proc = subprocess.run(
    [sys.executable, "-m", "experiments.report", str(tmp_path)],
    capture_output=True,
    text=True,
    cwd=Path(__file__).resolve().parents[1],
  )
  assert proc.returncode == 0, proc.stderr
  assert (tmp_path / "report.md").read_text() == first  # deterministic: same rows, same report


def cli_error(argv: list[str], capsys: pytest.CaptureFixture[str]) -> str:
  """The CLI's one-line error: `error: ...` on stderr and exit status 2 (model.errors)."""
  with pytest.raises(SystemExit) as exit_info:
    report.main(argv)
  assert exit_info.value.code == 2
  err = capsys.readouterr().err.strip().splitlines()
  assert len(err) == 1 and err[0].startswith("error: "), err
  return err[0]


def test_cli_without_results_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
  assert "no results" in cli_error([str(tmp_path)], capsys)
  assert "is not a directory" in cli_error([str(tmp_path / "missing")], capsys)


def test_cli_corrupt_results_names_the_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
  rows = rows_for("student-small", {"never": {0}})
  (tmp_path / "results.jsonl").write_text(json.dumps(rows[0]) + "\nnot json\n" + json.dumps(rows[1]) + "\n")
  assert "results.jsonl: corrupt line 2" in cli_error([str(tmp_path)], capsys)
  proc = subprocess.run(  # the module entry point: same line, status 2, no traceback
    [sys.executable, "-m", "experiments.report", str(tmp_path)],
    capture_output=True,
    text=True,
    cwd=Path(__file__).resolve().parents[1],
  )
  assert proc.returncode == 2 and "results.jsonl: corrupt line 2" in proc.stderr
  assert "Traceback" not in proc.stderr, proc.stderr


def test_cli_malformed_policy_names_it(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
  rows = rows_for("student-small", {"never": {0}, "step:two": {0}})
  write_results(tmp_path, rows)
  assert "malformed policy 'step:two' in the results" in cli_error([str(tmp_path)], capsys)
  assert not (tmp_path / "report.md").exists() and not (tmp_path / "summary.csv").exists()


# --------------------------------------------------------------------------- atomic files


def test_atomic_write_creates_parents_and_syncs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
  synced = []
  real_fsync = files.os.fsync
  monkeypatch.setattr(files.os, "fsync", lambda fd: (synced.append(fd), real_fsync(fd)))
  path = tmp_path / "a" / "b" / "out.txt"
  files.atomic_write_text(path, "caf\u00e9\n")
  assert path.read_bytes() == "caf\u00e9\n".encode() and len(synced) == 1
  files.atomic_write_bytes(path, b"new")
  assert path.read_bytes() == b"new" and len(synced) == 2
  assert [p.name for p in path.parent.iterdir()] == ["out.txt"]  # no temp files left


def test_atomic_write_failure_keeps_old_file_and_removes_temp(
  tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
  path = tmp_path / "summary.csv"
  path.write_text("old")

  def fail(src: Any, dst: Any) -> None:
    raise OSError("disk on fire")

  monkeypatch.setattr(files.os, "replace", fail)
  with pytest.raises(OSError, match="disk on fire"):
    files.atomic_write_text(path, "new")
  monkeypatch.undo()
  with pytest.raises(TypeError):
    files.atomic_write_bytes(path, "not bytes")  # type: ignore[arg-type]  # fails inside the write
  assert path.read_text() == "old"
  assert [p.name for p in tmp_path.iterdir()] == ["summary.csv"]

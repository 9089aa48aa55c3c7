"""`python -m experiments.report OUTPUT_DIR`: the same report in-process and as a module, and every
failure one `error: ...` line with exit status 2."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from report_rows import FIRST_STEP_WINS, rows_for, write_results

from experiments.report import writer as report


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

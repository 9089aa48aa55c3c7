"""analysis's loading of results files (loading.py): several files merged, duplicate row ids dropped,
a truncated final line tolerated and a corrupt one named."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from analysis_rows import make_rows

from experiments.report import analysis


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

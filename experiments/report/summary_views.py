"""Lookups into the summary table that the plots and the narrative share: missing teacher/checkpoint
as "" (`keyed`) so they compare equal, one config's row for a policy, and its student-only row."""

from __future__ import annotations

import pandas as pd

from decode.core.policy import STUDENT_ONLY
from experiments.report.formatting import missing


def keyed(summary: pd.DataFrame) -> pd.DataFrame:
  """Summary with missing teacher/checkpoint as '' so they compare equal."""
  s = summary.copy()
  for col in ("teacher", "checkpoint"):
    s[col] = ["" if missing(v) else str(v) for v in s[col]]
  return s


def summary_row(
  s: pd.DataFrame, task: str, student: str, teacher: str, checkpoint: str, policy: str
) -> pd.Series | None:
  hit = s[
    (s.task == task)
    & (s.student == student)
    & (s.teacher == teacher)
    & (s.checkpoint == checkpoint)
    & (s.policy == policy)
  ]
  return None if hit.empty else hit.iloc[0]


def baseline_row(s: pd.DataFrame, task: str, student: str, teacher: str, checkpoint: str) -> pd.Series | None:
  """Student-only row for a config; a teacher-less "never" row serves every teacher."""
  row = summary_row(s, task, student, teacher, checkpoint, STUDENT_ONLY)
  return (
    row if row is not None or teacher == "" else summary_row(s, task, student, "", checkpoint, STUDENT_ONLY)
  )

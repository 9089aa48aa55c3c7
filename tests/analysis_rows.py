"""Hand-built result rows whose every number is known in advance, shared by the analysis tests.

Ten problems; `CORRECT` says which ones each policy gets right for student-small, seed 0, so every
accuracy, gain, rescue and harm count in the tests can be worked out by hand.
"""

from __future__ import annotations

from typing import Any

import pandas as pd

N = 10
ANSWERS = [str(10 + i) for i in range(N)]  # problem i's gold answer
# Which problems each policy gets right (student-small, seed 0).
CORRECT = {
  "never": {0, 1},  # baseline 2/10
  "step:1": {1, 2, 3, 4, 5, 6},  # 6/10: rescues 2..6 (5), harms 0 (1)
  "step:2": {0, 1, 2},  # 3/10: rescues 2 (1), harms none
  "always": set(range(N)),
}


def row(policy: str, i: int, correct: bool, **kw: Any) -> dict[str, Any]:
  base = dict(
    row_id=f"{kw.get('student', 'student-small')}|{policy}|{kw.get('seed', 0)}|p{i}",
    task="synthetic",
    problem_id=f"p{i}",
    student="student-small",
    teacher="teacher-big",
    checkpoint=None,
    policy=policy,
    seed=0,
    completion="...",
    prediction=None,
    answer=ANSWERS[i],
    correct=correct,
    student_tokens=20,
    teacher_tokens=0,
    teacher_prefilled=0,
    switches=0,
    intervention_steps=[],
    num_steps=3,
    teacher_text="",
  )
  base.update(kw)
  return base


def teacher_text(policy: str, i: int) -> str:
  """step:1 leaks the answer on p3 only; p4 carries the answer as a substring of a bigger number."""
  if policy == "step:1" and i == 3:
    return f"First, <<10+3={ANSWERS[3]}>> so he has {ANSWERS[3]} apples.\n"
  if policy == "step:1" and i == 4:
    return f"First, 1{ANSWERS[4]} - 5 = {int('1' + ANSWERS[4]) - 5}.\n"
  if policy == "always":
    return f"The answer is {ANSWERS[i]}."
  return "First, 2 * 3 = 6.\n" if policy != "never" else ""


def make_rows() -> list[dict[str, Any]]:
  rows = []
  for policy, right in CORRECT.items():
    for i in range(N):
      tt = {"never": 0, "step:1": 5, "step:2": 5, "always": 20}[policy]
      rows.append(
        row(
          policy,
          i,
          i in right,
          teacher_tokens=tt,
          student_tokens=20 - tt if policy != "never" else 20,
          switches=0 if policy in ("never", "always") else 1,
          teacher_text=teacher_text(policy, i),
        )
      )
  return rows


def one(summary: pd.DataFrame, policy: str, **keys: Any) -> pd.Series:
  hit = summary[summary.policy == policy]
  for k, v in keys.items():
    hit = hit[hit[k] == v]
  assert len(hit) == 1, hit
  return hit.iloc[0]

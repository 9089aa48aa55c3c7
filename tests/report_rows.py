"""Result rows for the report tests: one row per (policy, problem) of a ten-problem sweep, spread over
results files as parallel writers would, and the check that a written plot is a real PNG."""

from __future__ import annotations

import json
import struct
from pathlib import Path
from typing import Any, Iterable

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
N = 10


def rows_for(
  student: str,
  correct: dict[str, Iterable[int]],
  checkpoint: str | None = None,
  teacher: str | None = "teacher-big",
  n: int = N,
) -> list[dict[str, Any]]:
  """One row per (policy, problem) of `n` problems; `correct` lists the problems each policy gets right."""
  out = []
  for policy, right in correct.items():
    right = set(right)
    tt = 0 if policy == "never" else 20 if policy == "always" else 5
    for i in range(n):
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

"""Append-only JSONL results with crash-safe resume.

Each finished batch is appended with one write() and fsync'd. A kill can leave at most a partial
last line; on open it is cut off (those rows simply run again), so no finished row is lost and no
row is written twice.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Iterable


class ResultsStore:
  def __init__(self, path: str | os.PathLike):
    self.path = Path(path)
    self.path.parent.mkdir(parents=True, exist_ok=True)
    self._repair_tail()
    self.rows: dict[str, dict] = {}
    if self.path.exists():
      with self.path.open() as f:
        for n, line in enumerate(f, 1):
          try:
            row = json.loads(line)
          except json.JSONDecodeError as e:
            raise ValueError(
              f"{self.path}:{n}: corrupt results line ({e.msg}); move the file aside or fix the line"
            )
          self.rows.setdefault(row["row_id"], row)

  def _repair_tail(self) -> None:
    """Drops an incomplete final line left by a kill mid-write."""
    if not self.path.exists():
      return
    data = self.path.read_bytes()
    if data and not data.endswith(b"\n"):
      keep = data.rfind(b"\n") + 1
      with self.path.open("r+b") as f:
        f.truncate(keep)
        f.flush()
        os.fsync(f.fileno())

  def done(self, row_id: str) -> bool:
    return row_id in self.rows

  def append(self, rows: Iterable[dict]) -> None:
    rows = [r for r in rows if r["row_id"] not in self.rows]
    if not rows:
      return
    payload = "".join(json.dumps(r, sort_keys=True) + "\n" for r in rows)
    with self.path.open("a") as f:
      f.write(payload)
      f.flush()
      os.fsync(f.fileno())
    for r in rows:
      self.rows[r["row_id"]] = r

"""Append-only JSONL results with crash-safe resume and one writer per file.

Each finished batch is appended with one write() and fsync'd. A kill can leave at most a partial
last line; on open it is cut off (those rows simply run again), so no finished row is lost and no
row is written twice. Opening takes the file's writer lock (experiments/sweep/lock.py) before it
reads or repairs anything, so a second sweep on the same file is refused instead of interleaving
rows. Any other unparseable line is corruption: a clear error naming the file and line, never
silently skipped. Rows already in the other processes' files (`others`) count as done, so changing
the number of processes between runs does not decode a row twice. The one exception to append-only
is `supersede` (a recalibrated trigger, thresholds.py): its old rows move, byte for byte, to a file
the report does not read, and the results file is rewritten without them, atomically.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Callable, Iterable, Iterator

from experiments.files import atomic_write_bytes
from experiments.sweep.lock import WriterLock
from model.errors import UserError

RESULTS_GLOB = "results*.jsonl"  # results.jsonl (process 0), results-1.jsonl, ...


def results_files(output_dir: str | os.PathLike) -> list[Path]:
  """An output dir's results files in process order: results.jsonl first, then results-1, results-2, ...
  numerically (the same order in every process; where rows repeat, the first file wins)."""

  def order(path: Path) -> tuple[int, int, str]:
    m = re.fullmatch(r"results(?:-(\d+))?\.jsonl", path.name)
    if m is None:
      return (1, 0, path.name)
    return (0, int(m.group(1) or -1), path.name)

  return sorted((p for p in Path(output_dir).glob(RESULTS_GLOB) if p.is_file()), key=order)


class CorruptResultsError(UserError):
  """A results line that is not a finished row (a kill's partial last line is repaired, not this)."""


def parse_row(path: Path, line_no: int, line: str | bytes) -> dict:
  """One results line -> row; anything else is a CorruptResultsError naming file and line."""
  try:
    row = json.loads(line)
  except (ValueError, UnicodeDecodeError) as e:
    raise CorruptResultsError(
      f"{path}: corrupt line {line_no} ({getattr(e, 'msg', e)}); move the file aside, or fix or delete "
      "that line, then run again"
    ) from None
  if not isinstance(row, dict) or not isinstance(row.get("row_id"), str):
    raise CorruptResultsError(
      f"{path}: corrupt line {line_no} (not a results row: no string row_id); move the file aside, or "
      "fix or delete that line, then run again"
    )
  return row


def complete_rows(path: Path) -> Iterator[dict]:
  """Rows of every newline-terminated line (a line still being written by its owner is not read)."""
  data = path.read_bytes() if path.exists() else b""
  for n, line in enumerate(data[: data.rfind(b"\n") + 1].split(b"\n")[:-1], 1):
    if line.strip():
      yield parse_row(path, n, line)


class ResultsStore:
  """`others`: the other processes' results files. `owns` (global mesh): which rows this process
  writes; every process decodes every row, so rows it does not write are still held in `rows` (as
  are the other files' rows, read in full), and every process plans the same calls."""

  def __init__(
    self,
    path: str | os.PathLike,
    *,
    others: Iterable[str | os.PathLike] = (),
    owns: Callable[[str], bool] | None = None,
  ):
    self.path = Path(path)
    self.owns = owns
    self.path.parent.mkdir(parents=True, exist_ok=True)
    self._lock = WriterLock(self.path)
    self.appended = 0  # rows this store wrote (what a run decoded)
    try:
      self._repair_tail()
      self.rows: dict[str, dict] = {}
      for row in complete_rows(self.path):
        self.rows.setdefault(row["row_id"], row)
      if owns is None:  # ids finished in other processes' files: skipped here, never read for their content
        self.elsewhere = {row["row_id"] for p in others for row in complete_rows(Path(p))} - self.rows.keys()
      else:  # every process holds every row (a global mesh's processes plan alike)
        self.elsewhere = set()
        for p in others:
          for row in complete_rows(Path(p)):
            self.rows.setdefault(row["row_id"], row)
    except BaseException:
      self.close()
      raise

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
    return row_id in self.rows or row_id in self.elsewhere

  def append(self, rows: Iterable[dict]) -> None:
    rows = [r for r in rows if not self.done(r["row_id"])]
    mine = rows if self.owns is None else [r for r in rows if self.owns(r["row_id"])]
    for r in rows:  # held either way: a row another process writes is done here too
      self.rows[r["row_id"]] = r
    if not mine:
      return
    payload = "".join(json.dumps(r, sort_keys=True) + "\n" for r in mine)
    with self.path.open("a") as f:
      f.write(payload)
      f.flush()
      os.fsync(f.fileno())
    self.appended += len(mine)

  def supersede(self, row_ids: Iterable[str], aside: Path) -> int:
    """Moves these rows of this file to `aside` (appended, fsync'd first), then rewrites this file
    without them (atomic replace; the other rows keep their bytes and order). Returns how many moved."""
    ids = set(row_ids) & self.rows.keys()
    if not ids:
      return 0
    keep: list[bytes] = []
    moved: list[bytes] = []
    for line in self.path.read_bytes().splitlines(keepends=True):
      (moved if line.strip() and json.loads(line)["row_id"] in ids else keep).append(line)
    with Path(aside).open("ab") as f:
      f.write(b"".join(moved))
      f.flush()
      os.fsync(f.fileno())
    atomic_write_bytes(self.path, b"".join(keep))
    for i in ids:
      del self.rows[i]
    return len(moved)

  def close(self) -> None:
    """Releases the writer lock (process exit does too)."""
    self._lock.release()

  def __enter__(self) -> ResultsStore:
    return self

  def __exit__(self, *exc) -> None:
    self.close()

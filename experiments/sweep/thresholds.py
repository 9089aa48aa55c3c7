"""Calibrated thresholds and matched rates, fixed when first set: thresholds.json next to the manifest.

Why: a `q=` trigger's threshold is read off the `never` rows, and a matched control's rate off its
trigger's rows. When a sweep grows, both sets of rows grow, so computing them again would give the
new rows another threshold (or control spec) than the old ones: one trigger spec, two thresholds,
mixed under one report. So each is recorded when first set, with the rows it came from (their count
and a digest of their ids), and a grown sweep reuses it. `recalibrate=True` computes them again from
this run's rows; where the value changes, the rows that used the old one (the trigger's, and its
matched controls) are moved to superseded[-N].jsonl and decoded again: rows of one trigger spec
always share one threshold. Thresholds recorded nowhere but in the results (a dir from before this
file) are adopted from the rows that carry them.

One file per output dir, thresholds.json next to the manifest: in a multi-process sweep process 0
sets every value from all processes' rows and writes it, the others read it (calibrator.py), so one
spec runs with one threshold and one control in the whole sweep. (Dirs from before kept one file per
process, thresholds-N.json; those are no longer read.)
"""

from __future__ import annotations

import datetime
import json
from pathlib import Path
from typing import Iterable

from decode.core.policy import parse_policy
from experiments.files import atomic_write_text
from experiments.sweep.grid import record_student_key
from experiments.sweep.identity import ids_digest

FORMAT = 1


BOOK = "thresholds.json"


def book_path(output_dir: Path) -> Path:
  """The sweep's one thresholds.json (every process's, next to the manifest)."""
  return Path(output_dir) / BOOK


def superseded_path(results: Path) -> Path:
  """Where superseded rows go (not results*.jsonl: the report never reads them)."""
  return results.with_name(results.name.replace("results", "superseded", 1))


def group_key(group: tuple) -> str:
  """(task, student, checkpoint, spec) -> 'task|student|checkpoint|spec' (as row ids write them)."""
  task, student, checkpoint, spec = group
  return "|".join([task, student, checkpoint or "-", spec])


def source(records: Iterable[dict]) -> dict:
  """The rows a value came from: how many, and a digest of their ids."""
  ids = [r["row_id"] for r in records]
  return {"rows": len(ids), "row_ids": ids_digest(ids)}


class CalibrationBook:
  """The recorded thresholds and matched rates of one results file; `path` None keeps them in memory."""

  def __init__(self, path: Path | None = None):
    self.path = path
    self.entries: dict[str, dict] = {}
    self.reload()

  def reload(self) -> None:
    """Reads the file again (a process that waits for process 0's values); atomic writes, never torn."""
    if self.path is not None and self.path.exists():
      self.entries = json.loads(self.path.read_text())["triggers"]

  def get(self, group: tuple) -> dict:
    return dict(self.entries.get(group_key(group), {}))

  def record(self, group: tuple, **values) -> None:
    """Sets values (None: drops the key) of a group's entry and writes the file atomically."""
    task, student, checkpoint, spec = group
    entry = self.entries.setdefault(
      group_key(group), {"task": task, "student": student, "checkpoint": checkpoint, "policy": spec}
    )
    now = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
    for k, v in values.items():
      if v is None:
        entry.pop(k, None)
      else:
        entry[k] = v
    entry["updated"] = now
    if self.path is not None:
      atomic_write_text(self.path, json.dumps({"format": FORMAT, "triggers": self.entries}, indent=2) + "\n")


def trigger_rows(rows: Iterable[dict], group: tuple) -> list[dict]:
  """Results rows of the group's trigger (not its controls)."""
  return [
    r
    for r in rows
    if r["policy"] == group[-1] and not r.get("matched_to") and record_student_key(r) == group[:3]
  ]


def control_rows(rows: Iterable[dict], group: tuple) -> list[dict]:
  """Results rows of the group's matched random controls."""
  return [r for r in rows if r.get("matched_to") == group[-1] and record_student_key(r) == group[:3]]


def held_threshold(book: CalibrationBook, rows: Iterable[dict], group: tuple) -> float | None:
  """The threshold the group's rows use: recorded, or adopted from its rows in the results."""
  entry = book.get(group)
  if "threshold" in entry:
    return entry["threshold"]
  found = trigger_rows(rows, group)
  return found[0]["threshold"] if found else None


def held_rate(book: CalibrationBook, rows: Iterable[dict], group: tuple) -> float | None:
  """The matched control's rate: recorded, or adopted from the control rows in the results."""
  entry = book.get(group)
  if "matched_rate" in entry:
    return entry["matched_rate"]
  found = control_rows(rows, group)
  return parse_policy(found[0]["policy"]).threshold if found else None

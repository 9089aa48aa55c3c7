"""One threshold and one matched control per trigger spec for the whole sweep, however many processes.

Why: a `q=` threshold read off one process's share of the `never` rows, or a matched rate read off
one process's share of the trigger rows, differs from process to process; one spec would then run
with several thresholds and several controls in one sweep. So process 0 (the writer) sets every
value of the sweep's grid from every process's rows (results*.jsonl: it waits until the rows it
needs are in) and records it in thresholds.json next to the manifest (atomically); the other
processes wait for the value there and read it. The order makes waiting safe: each process decodes
its `never` rows before it waits for a threshold, and every one of its rows before it waits for a
matched rate, so what process 0 waits for is always on its way.

A value recorded once is kept (thresholds.py); `recalibrate` sets it again. Every process then moves
its own rows that used another value (and their controls) to superseded[-N].jsonl, to be decoded
again: this also mends a dir from before (when each process calibrated on its own share).
A process that waits says so on stderr; it waits as long as its peers decode (a peer that dies takes
the sweep down through jax's coordination service, or the user does).
"""

from __future__ import annotations

import sys
import time
from typing import Callable, Iterable

from decode.core.policy import Policy
from experiments.sweep.calibration import calibrate, matched_control, realized_rate
from experiments.sweep.grid import SweepRow
from experiments.sweep.store import ResultsStore, complete_rows, results_files
from experiments.sweep.thresholds import (
  CalibrationBook,
  control_rows,
  held_rate,
  held_threshold,
  source,
  superseded_path,
  trigger_rows,
)

POLL_S = 1.0  # a waiting process looks again this often
NOTICE_EVERY_S = 300.0  # and repeats what it waits for this often


def ids_source(ids: Iterable[str]) -> dict:
  """`thresholds.source` of rows known by id only (what a waiting process expects to be recorded)."""
  return source({"row_id": i} for i in ids)


class SweepCalibrator:
  """The thresholds and matched rates one process's runner uses: set by the writer, read by the rest.

  `writer`: process 0 (the only process that writes thresholds.json); `wait`: whether other processes
  write rows of this sweep at the same time (a single process never waits); `pause`: what a wait does
  between looks (sleeps POLL_S; a test passes what the other processes would do meanwhile).
  """

  def __init__(
    self,
    store: ResultsStore,
    book: CalibrationBook,
    *,
    recalibrate: bool = False,
    writer: bool = True,
    wait: bool = False,
    pause: Callable[[], None] = lambda: time.sleep(POLL_S),
  ):
    self.store, self.book, self.recalibrate = store, book, recalibrate
    self.writer, self.wait, self.pause = writer, wait, pause
    self.superseded = 0  # this process's rows moved aside for another value

  # -- reading every process's rows ---------------------------------------------------------------
  def sweep_rows(self) -> list[dict]:
    """Every finished row of the sweep, in process order (this process's from memory; on a global
    mesh that holds the other files' rows too, each kept once)."""
    out: dict[str, dict] = {}
    for path in results_files(self.store.path.parent):
      for row in self.store.rows.values() if path == self.store.path else complete_rows(path):
        out.setdefault(row["row_id"], row)
    return list(out.values())

  def _until(self, what: str, ready: Callable[[], object]):
    """ready()'s first value that is not None; polls while other processes may still bring it."""
    value = ready()
    if value is not None or not self.wait:
      return value
    said = time.monotonic()
    print(f"waiting for {what}", file=sys.stderr, flush=True)
    while (value := ready()) is None:
      self.pause()
      if time.monotonic() - said > NOTICE_EVERY_S:
        said = time.monotonic()
        print(f"still waiting for {what}", file=sys.stderr, flush=True)
    return value

  def _entry(self, group: tuple) -> dict:
    """The group's recorded entry as it is on disk now (the writer's copy is always current)."""
    if not self.writer:
      self.book.reload()
    return self.book.get(group)

  # -- thresholds -----------------------------------------------------------------------------------
  def threshold(self, group: tuple, policy: Policy, never_ids: set[str]) -> float:
    """The threshold of the group's `q=` trigger: recorded, or set by the writer from every `never`
    row of the group's student in the grid (`never_ids`); this process's rows of another go."""
    value = (self._set_threshold if self.writer else self._read_threshold)(group, policy, never_ids)
    stale = [r for r in trigger_rows(self.store.rows.values(), group) if r.get("threshold") != value]
    if stale:  # rows of one spec share one threshold: these are decoded again, and so are their controls
      self._supersede(stale + control_rows(self.store.rows.values(), group))
    return value

  def _set_threshold(self, group: tuple, policy: Policy, never_ids: set[str]) -> float:
    held = held_threshold(self.book, self.sweep_rows(), group)
    if held is not None and not self.recalibrate:
      if "threshold" not in self.book.get(group):  # a dir from before thresholds.json: its rows' value
        self.book.record(group, threshold=held, threshold_from="adopted from its rows in the results")
      return held
    never = self._until(
      f"every process's `never` rows of {group[1]} to calibrate {group[-1]}",
      lambda: self._all_of(never_ids),
    )
    threshold = calibrate(policy, never).threshold
    if held is not None and threshold != held:  # its controls were matched to rows of the old one
      self.book.record(group, matched_rate=None, matched_rate_from=None)
    self.book.record(group, threshold=threshold, threshold_from=source(never))
    return threshold

  def _read_threshold(self, group: tuple, policy: Policy, never_ids: set[str]) -> float:
    expected = ids_source(never_ids)

    def recorded():
      entry = self._entry(group)
      if "threshold" in entry and (not self.recalibrate or entry.get("threshold_from") == expected):
        return entry["threshold"]
      if self.recalibrate or entry:
        return None
      return held_threshold(self.book, self.sweep_rows(), group)  # a dir from before: process 0 adopts it

    return self._until(f"process 0 to set the threshold of {group[-1]}", recorded)

  # -- matched rates --------------------------------------------------------------------------------
  def matched_rate(self, group: tuple, members: list[SweepRow]) -> float | None:
    """The rate of the group's matched control: recorded, or set by the writer from every trigger row
    of the grid (`members`, calibrated); None when they have no step starts. This process's controls
    at another rate go."""
    trigger = members[0].policy
    expected = {**ids_source(r.row_id for r in members), "threshold": trigger.threshold}
    rate = (self._set_rate if self.writer else self._read_rate)(group, members, expected)
    if rate is not None:
      spec = matched_control(trigger, rate).spec
      stale = [r for r in control_rows(self.store.rows.values(), group) if r["policy"] != spec]
      if stale:
        self._supersede(stale)
    return rate

  def _set_rate(self, group: tuple, members: list[SweepRow], expected: dict) -> float | None:
    held = held_rate(self.book, self.sweep_rows(), group)
    if held is not None and not self.recalibrate:
      if "matched_rate" not in self.book.get(group):
        self.book.record(
          group, matched_rate=held, matched_rate_from="adopted from its controls in the results"
        )
      return held
    threshold = expected["threshold"]
    done = self._until(
      f"every process's rows of {group[-1]} to match its control",
      lambda: self._all_of({r.row_id for r in members}, lambda r: r.get("threshold") == threshold),
    )
    rate = realized_rate(done)
    # The rows it came from (and the threshold they ran with) tell a waiting process the value is current.
    self.book.record(group, matched_rate=None if rate != rate else rate, matched_rate_from=expected)
    return None if rate != rate else rate

  def _read_rate(self, group: tuple, members: list[SweepRow], expected: dict) -> float | None:
    none = object()  # recorded as "no step starts to match"

    def recorded():
      entry = self._entry(group)
      current = entry.get("matched_rate_from") == expected
      if "matched_rate" in entry and (current or not self.recalibrate):
        return entry["matched_rate"]
      if current:
        return none
      if self.recalibrate or entry.get("matched_rate_from") is not None:
        return None
      return held_rate(self.book, self.sweep_rows(), group)  # a dir from before: its controls' rate

    rate = self._until(f"process 0 to set the matched rate of {group[-1]}", recorded)
    return None if rate is none else rate

  # -- helpers ---------------------------------------------------------------------------------------
  def _all_of(self, ids: set[str], keep: Callable[[dict], bool] = lambda r: True) -> list[dict] | None:
    """The sweep's rows with these ids (that `keep` accepts), once every one is in; None before."""
    found = {r["row_id"]: r for r in self.sweep_rows() if r["row_id"] in ids and keep(r)}
    if len(found) < len(ids) and self.wait:
      return None
    return list(found.values())

  def _supersede(self, records: list[dict]) -> None:
    ids = list(dict.fromkeys(r["row_id"] for r in records))
    self.superseded += self.store.supersede(ids, superseded_path(self.store.path))

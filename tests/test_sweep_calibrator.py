"""One threshold and one matched control per spec for a whole multi-process sweep (calibrator.py).

Hand-worked: four problems, process 0's results file holds problems 0 and 1, process 1's problems 2
and 3. The `never` rows' step-start entropies are 0.1 0.2 | 0.3 0.4 | 1.1 1.2 | 1.3 1.4, so
`entropy:q=0.5` over all eight fires on the 4 largest: threshold 0.4 (the 4th smallest). Process 0's
share alone would give 0.2, process 1's 1.2. The trigger rows' (step starts, teacher steps) are
(2, 0) (2, 1) | (3, 2) (1, 1): rate 4/8 = 0.5 over all, 1/4 and 3/4 over each share.

A process's waits are driven by `pause`: what the other process does while this one waits.
"""

import dataclasses
import json

from decode.core.policy import parse_policy
from experiments.sweep.calibrator import SweepCalibrator, ids_source
from experiments.sweep.grid import ModelEntry, expand_grid
from experiments.sweep.store import ResultsStore
from experiments.sweep.thresholds import CalibrationBook, book_path
from experiments.tasks.datasets import Problem

TRIGGER = "entropy:q=0.5"
ENTROPIES = {0: [0.1, 0.2], 1: [0.3, 0.4], 2: [1.1, 1.2], 3: [1.3, 1.4]}
STEPS = {0: ([1, 1, 2], []), 1: ([1, 2], [2]), 2: ([1, 2, 3, 3], [1, 3]), 3: ([1], [1])}
WHOLE, SHARE_0, SHARE_1 = 0.4, 0.2, 1.2


def grid():
  problems = [Problem(f"p/{i}", "q", "1", None, "t") for i in range(4)]
  policies = [parse_policy("never"), parse_policy(TRIGGER)]
  return expand_grid(
    "t", problems, {p.problem_id: "" for p in problems}, [ModelEntry("s", "x")], None, policies, [0]
  )


def record(row, threshold=None) -> dict:
  i = int(row.problem.problem_id[2:])
  rec = dict(row_id=row.row_id, task="t", student="s", checkpoint=None, policy=row.policy.spec, seed=0)
  rec.update(problem_id=row.problem.problem_id, matched_to=row.matched_to, threshold=threshold)
  if row.policy.student_only():
    rec.update(step_uncertainty=[[e, 0.5, 0.5] for e in ENTROPIES[i]], step_ids=[], intervention_steps=[])
  else:
    rec.update(step_uncertainty=[], step_ids=STEPS[i][0], intervention_steps=STEPS[i][1])
  return rec


def rows_of(policy: str, problems, threshold=None) -> list[dict]:
  return [
    record(r, threshold)
    for r in grid()
    if r.policy.spec == policy and int(r.problem.problem_id[2:]) in problems
  ]


class Sweep:
  """Two processes' stores and calibrators over one output dir."""

  def __init__(self, out, recalibrate=False):
    self.stores = [ResultsStore(out / "results.jsonl"), ResultsStore(out / "results-1.jsonl")]
    self.book = book_path(out)
    self.recalibrate = recalibrate

  def calibrator(self, process: int, pause) -> SweepCalibrator:
    return SweepCalibrator(
      self.stores[process],
      CalibrationBook(self.book),
      recalibrate=self.recalibrate,
      writer=process == 0,
      wait=True,
      pause=pause,
    )

  def close(self):
    for s in self.stores:
      s.close()


class then:
  """A pause that does the next of `actions` (the other process's work meanwhile) each time it waits;
  `done` once every one was needed."""

  def __init__(self, *actions):
    self.left = list(actions)

  def __call__(self):
    assert self.left, "waited again: the value never came"
    self.left.pop(0)()

  @property
  def done(self) -> bool:
    return not self.left


def never_pause():
  raise AssertionError("waited though nothing was missing")


GROUP = ("t", "s", None, TRIGGER)
NEVER_IDS = {r.row_id for r in grid() if r.policy.student_only()}


def test_process_0_waits_for_every_process_never_rows_and_calibrates_on_all(tmp_path):
  sweep = Sweep(tmp_path)
  sweep.stores[0].append(rows_of("never", {0, 1}))
  # Process 1's never rows come in while process 0 waits; calibrating on its own share would give 0.2.
  process_1 = then(lambda: sweep.stores[1].append(rows_of("never", {2, 3})))
  writer = sweep.calibrator(0, process_1)
  assert writer.threshold(GROUP, parse_policy(TRIGGER), NEVER_IDS) == WHOLE and process_1.done
  (entry,) = json.loads(sweep.book.read_text())["triggers"].values()
  assert entry["threshold"] == WHOLE and entry["threshold_from"]["rows"] == 4
  assert sorted(p.name for p in tmp_path.glob("thresholds*.json")) == ["thresholds.json"]  # one for the sweep
  sweep.close()


def test_other_processes_wait_for_process_0s_threshold(tmp_path):
  sweep = Sweep(tmp_path)
  sweep.stores[0].append(rows_of("never", {0, 1}))
  sweep.stores[1].append(rows_of("never", {2, 3}))
  writer = sweep.calibrator(0, never_pause)
  process_0 = then(lambda: writer.threshold(GROUP, parse_policy(TRIGGER), NEVER_IDS))
  reader = sweep.calibrator(1, process_0)
  assert reader.threshold(GROUP, parse_policy(TRIGGER), NEVER_IDS) == WHOLE  # not 1.2: its own share
  assert process_0.done  # it waited for process 0 to set the value, rather than set one itself
  assert not (tmp_path / "thresholds-1.json").exists()
  sweep.close()


def test_rows_of_another_threshold_go_with_their_controls(tmp_path):
  """A dir from before: process 1 had calibrated its trigger rows (and their control) on its own share."""
  sweep = Sweep(tmp_path)
  sweep.calibrator(0, never_pause).book.record(GROUP, threshold=WHOLE, threshold_from="process 0")
  stale = rows_of(TRIGGER, {3}, threshold=SHARE_1)
  control = dict(stale[0], row_id=stale[0]["row_id"] + "-control", policy="random:0.75", matched_to=TRIGGER)
  kept = rows_of(TRIGGER, {1}, threshold=WHOLE)
  sweep.stores[1].append(stale + [control] + kept)
  reader = sweep.calibrator(1, never_pause)
  assert reader.threshold(GROUP, parse_policy(TRIGGER), NEVER_IDS) == WHOLE
  assert reader.superseded == 2 and list(sweep.stores[1].rows) == [kept[0]["row_id"]]
  aside = [json.loads(x)["row_id"] for x in (tmp_path / "superseded-1.jsonl").read_text().splitlines()]
  assert aside == [stale[0]["row_id"], control["row_id"]]
  sweep.close()


def calibrated_members():
  policy = parse_policy(TRIGGER).calibrated(WHOLE)
  return [dataclasses.replace(r, policy=policy) for r in grid() if r.policy.spec == TRIGGER]


def test_process_0_matches_the_control_to_every_process_trigger_rows(tmp_path):
  sweep = Sweep(tmp_path)
  sweep.stores[0].append(rows_of(TRIGGER, {0, 1}, threshold=WHOLE))
  # Process 1's row of problem 2 still has another threshold (3 step starts, none the teacher's) while
  # it decodes problem 3; then it decodes problem 2 again.
  stale = dict(rows_of(TRIGGER, {2}, threshold=SHARE_1)[0], step_ids=[1, 2, 3], intervention_steps=[])
  sweep.stores[1].append([stale])

  def decode_again():
    sweep.stores[1].supersede([stale["row_id"]], tmp_path / "superseded-1.jsonl")
    sweep.stores[1].append(rows_of(TRIGGER, {2}, threshold=WHOLE))

  process_1 = then(lambda: sweep.stores[1].append(rows_of(TRIGGER, {3}, threshold=WHOLE)), decode_again)
  writer = sweep.calibrator(0, process_1)
  # Not 0.25 (its own share), nor 2/8 (the stale row of problem 2 in place of the current one).
  assert writer.matched_rate(GROUP, calibrated_members()) == 0.5 and process_1.done
  (entry,) = json.loads(sweep.book.read_text())["triggers"].values()
  assert entry["matched_rate"] == 0.5 and entry["matched_rate_from"]["rows"] == 4
  assert entry["matched_rate_from"]["threshold"] == WHOLE
  sweep.close()


def test_other_processes_wait_for_the_rate_from_these_rows_when_recalibrating(tmp_path):
  sweep = Sweep(tmp_path, recalibrate=True)
  sweep.stores[0].append(rows_of(TRIGGER, {0, 1}, threshold=WHOLE))
  sweep.stores[1].append(rows_of(TRIGGER, {2, 3}, threshold=WHOLE))
  # The book still holds the rate of the same rows run with the old threshold: not current.
  old = sweep.calibrator(0, never_pause)
  ids = ids_source(r.row_id for r in calibrated_members())
  old.book.record(GROUP, matched_rate=0.25, matched_rate_from={**ids, "threshold": SHARE_0})
  writer = sweep.calibrator(0, never_pause)
  process_0 = then(lambda: writer.matched_rate(GROUP, calibrated_members()))
  reader = sweep.calibrator(1, process_0)
  assert reader.matched_rate(GROUP, calibrated_members()) == 0.5 and process_0.done
  sweep.close()


def test_a_single_process_never_waits(tmp_path):
  store = ResultsStore(tmp_path / "results.jsonl")
  store.append(rows_of("never", {0, 1, 2, 3}) + rows_of(TRIGGER, {0, 1, 2, 3}, threshold=WHOLE))
  calibrator = SweepCalibrator(store, CalibrationBook(book_path(tmp_path)), pause=never_pause)
  assert calibrator.threshold(GROUP, parse_policy(TRIGGER), NEVER_IDS) == WHOLE
  assert calibrator.matched_rate(GROUP, calibrated_members()) == 0.5
  store.close()

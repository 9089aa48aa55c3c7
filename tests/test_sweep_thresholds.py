"""Calibrated triggers in a growing sweep: the q= threshold and the matched rate are fixed when first
set (thresholds.json); recalibrate=True sets them again and re-decodes the rows that used the old."""

import json

import pytest
from sweep_configs import rows_of, tiny_sweep_config

from decode.core.policy import parse_policy
from experiments.sweep.calibration import matched_control, realized_rate, threshold_for_rate
from experiments.sweep.run import run_sweep

POLICIES = ("never", "step:1", "entropy:q=0.3")
TRIGGER = "entropy:q=0.3"


def config(pair_dir, out, num_problems, **overrides):
  kw = dict(num_problems=num_problems, batch_size=4, max_new_tokens=20, matched_random=True)
  return tiny_sweep_config(pair_dir, out, POLICIES, **{**kw, **overrides})


def calibrated_on(rows, problems) -> float:
  """The threshold the never rows of these problems give."""
  values = [
    m[0]
    for r in rows.values()
    if r["policy"] == "never" and r["problem_id"] in problems
    for m in r["step_uncertainty"]
  ]
  return threshold_for_rate(True, 0.3, values)


def of(rows, policy=TRIGGER, control=False):
  return [r for r in rows.values() if (r.get("matched_to") == TRIGGER if control else r["policy"] == policy)]


def test_a_grown_never_set_reuses_the_recorded_threshold_unless_recalibrated(pair_dir, tmp_path):
  out = tmp_path / "out"
  run_sweep(config(pair_dir, out, 4), progress=False)
  book = json.loads((out / "thresholds.json").read_text())["triggers"]
  (entry,) = book.values()
  first = entry["threshold"]
  rows = rows_of(out)
  four = {f"synthetic/test/{i}" for i in range(4)}
  assert first == pytest.approx(calibrated_on(rows, four))
  assert entry["threshold_from"]["rows"] == 4 and entry["matched_rate_from"]["rows"] == 4
  control_spec = of(rows, control=True)[0]["policy"]

  stats = run_sweep(config(pair_dir, out, 8), progress=False)  # 4 more problems, so 4 more never rows
  rows = rows_of(out)
  eight = {f"synthetic/test/{i}" for i in range(8)}
  assert calibrated_on(rows, eight) != first  # what calibrating again would have given
  assert len(of(rows)) == 8 and {r["threshold"] for r in of(rows)} == {first}  # one threshold
  assert len(of(rows, control=True)) == 8 and {r["policy"] for r in of(rows, control=True)} == {control_spec}
  assert (stats["decoded"], stats["kept"], stats["superseded"]) == (4 * 4, 4 * 4, 0)
  assert json.loads((out / "thresholds.json").read_text())["triggers"] == book

  before = (out / "results.jsonl").read_bytes()
  stats = run_sweep(config(pair_dir, out, 8, recalibrate=True), progress=False)
  rows = rows_of(out)
  again = calibrated_on(rows, eight)
  trig = of(rows)
  assert len(trig) == 8 and {r["threshold"] for r in trig} == {again}  # all re-decoded
  controls = of(rows, control=True)
  want = matched_control(parse_policy(TRIGGER), realized_rate(trig)).spec
  assert len(controls) == 8 and {r["policy"] for r in controls} == {want}
  assert stats["superseded"] == 16 and stats["decoded"] == 16  # the trigger's rows and their controls
  aside = [json.loads(x) for x in (out / "superseded.jsonl").read_text().splitlines()]
  assert len(aside) == 16 and {r["threshold"] for r in aside if r["policy"] == TRIGGER} == {first}
  kept = [x for x in before.splitlines(keepends=True) if json.loads(x)["policy"] in ("never", "step:1")]
  assert (out / "results.jsonl").read_bytes().startswith(b"".join(kept))  # the rest: bytes and order
  entry = json.loads((out / "thresholds.json").read_text())["triggers"][next(iter(book))]
  assert entry["threshold"] == again and entry["threshold_from"]["rows"] == 8
  # Recalibrating on the same rows changes nothing.
  stats = run_sweep(config(pair_dir, out, 8, recalibrate=True), progress=False)
  assert (stats["decoded"], stats["superseded"]) == (0, 0)


def test_a_dir_from_before_thresholds_json_adopts_its_rows_threshold(pair_dir, tmp_path):
  out = tmp_path / "out"
  run_sweep(config(pair_dir, out, 4), progress=False)
  first = of(rows_of(out))[0]["threshold"]
  (out / "thresholds.json").unlink()  # as a sweep before this file left it: thresholds in the rows only
  stats = run_sweep(config(pair_dir, out, 8), progress=False)
  rows = rows_of(out)
  assert {r["threshold"] for r in of(rows)} == {first} and stats["superseded"] == 0
  assert len({r["policy"] for r in of(rows, control=True)}) == 1
  (entry,) = json.loads((out / "thresholds.json").read_text())["triggers"].values()
  assert entry["threshold"] == first and "adopted" in entry["threshold_from"]

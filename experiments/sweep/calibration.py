"""Calibrated triggers and their matched-rate controls.

`entropy:q=0.3` fires at 30% of the student's step starts: its threshold is read off the
step-start uncertainties that the sweep's student-only (`never`) rows record. A trigger's realized
rate (teacher-written steps over step starts) then defines its matched control, `random:P`.
"""

from __future__ import annotations

from typing import Iterable

import numpy as np

from decode.core.policy import Policy
from decode.errors import PolicyError

RATE_DIGITS = 4  # matched random:P is rounded, so resumed sweeps name the same rows


def threshold_for_rate(fires_above: bool, rate: float, values: Iterable[float]) -> float:
  """The threshold at which the trigger fires on round(rate * n) of the n recorded values.

  Entropy fires above its threshold, max prob and margin below theirs. With ties the count can
  differ from round(rate * n); the realized rate is reported either way.
  """
  v = np.sort(np.asarray([x for x in values if x == x], np.float64))  # NaN: not recorded
  n = v.size
  if n == 0:
    raise ValueError("no recorded step-start uncertainties to calibrate from")
  m = int(round(rate * n))  # how many step starts should fire
  if fires_above:  # entropy: fires when value > threshold, on the m largest
    return float(v[n - m - 1]) if m < n else float("-inf")
  return float(v[m]) if m < n else float("inf")  # fires when value < threshold: the m smallest


def _up_to_answer(rec: dict, steps) -> set[int]:
  """`steps` up to the row's answer step (all of them where the row records none): a step the row had
  only begun when its answer was complete (a "Question:" it started) is no step of its solution."""
  last = rec.get("answer_step")
  if last is None or last != last:  # None, or NaN in a table whose other rows have one
    return set(steps or [])
  return {s for s in steps or [] if s <= last}


def step_starts(rec: dict) -> int:
  """Steps a row began writing (its generated tokens' distinct step ids), up to its answer.

  `rec` here and below: a results row (a plain dict read from results.jsonl), never the config.
  """
  return len(_up_to_answer(rec, rec.get("step_ids")))


def realized_rate(records: Iterable[dict]) -> float:
  """Teacher-written steps over step starts, up to each row's answer, pooled over rows (NaN without
  step starts)."""
  recs = list(records)
  starts = sum(step_starts(r) for r in recs)
  written = sum(len(_up_to_answer(r, r.get("intervention_steps"))) for r in recs)
  return written / starts if starts else float("nan")


def calibrate(policy: Policy, never_records: Iterable[dict]) -> Policy:
  """`policy` with its threshold set from the student-only rows' recorded step-start uncertainties."""
  col = policy.uncertainty_column
  values = [m[col] for r in never_records for m in (r.get("step_uncertainty") or [])]
  if not values:
    raise PolicyError(
      f"policy {policy.spec!r} needs recorded step-start uncertainties from `never` rows of the same "
      "student; add 'never' to the sweep's policies (results written before this feature lack them)"
    )
  return policy.calibrated(threshold_for_rate(policy.fires_above, policy.rate, values))


def matched_control(trigger: Policy, rate: float) -> Policy:
  """random:P at the trigger's realized rate, with its budget and m (`Policy.matched_random`)."""
  return trigger.matched_random(rate, RATE_DIGITS)

"""report.md section: each trigger policy against its matched random control (`matched_random`)."""

from __future__ import annotations

import pandas as pd

from experiments.report.controls import RATE_TOLERANCE
from experiments.report.formatting import (
  NOT_AVAILABLE,
  ci,
  label,
  markdown_table,
  missing,
  paired_reading,
  pct,
  points,
)

INTRO = (
  "Each trigger policy is compared with `random:P` at the trigger's realized rate P (teacher-written "
  "steps over step starts), on the same (seed, problem) units: trigger - control in accuracy points, "
  "95% CI resampling problems. A CI above 0 means the trigger's choice of *when* helps beyond how "
  "often it calls the teacher. Both realized rates are measured on the units compared; a control whose "
  f"rate differs from its trigger's by more than {100 * RATE_TOLERANCE:.0f} points does not match it "
  "(the difference then also measures how often the teacher writes), and its reading says so."
)


def _rate_note(trigger_rate: float, control_rate: float) -> str:
  """'' when the control's realized rate matches the trigger's; else why the reading is not clean."""
  if missing(trigger_rate) or missing(control_rate):
    return "; rates not recorded"
  gap = control_rate - trigger_rate
  return "" if abs(gap) <= RATE_TOLERANCE else f"; rates differ by {100 * gap:+.1f} points: not matched"


def controls_section(controls: pd.DataFrame) -> list[str]:
  if controls.empty:
    return ["No matched controls in these results (set `matched_random = True` with a trigger policy).", ""]
  rows = []
  for r in controls.itertuples():
    verdict = paired_reading(r.diff_ci_low, r.diff_ci_high, "trigger", "control")
    verdict = ("not compared" if verdict == NOT_AVAILABLE else verdict) + _rate_note(
      r.trigger_rate, r.control_rate
    )
    rows.append(
      [
        label(r.student) + ("" if label(r.checkpoint) == "-" else f" @ {r.checkpoint}"),
        f"`{r.trigger}`",
        f"`{r.control}`",
        pct(r.trigger_rate),
        pct(r.control_rate),
        r.n,
        pct(r.trigger_accuracy),
        pct(r.control_accuracy),
        f"{points(r.diff_points)} {ci(r.diff_ci_low, r.diff_ci_high)}",
        verdict,
      ]
    )
  header = [
    "student",
    "trigger",
    "matched control",
    "trigger rate",
    "control rate",
    "n",
    "trigger acc",
    "control acc",
    "trigger - control [95% CI]",
    "reading",
  ]
  return [INTRO, "", markdown_table(header, rows), ""]

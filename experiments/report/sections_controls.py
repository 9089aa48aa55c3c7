"""report.md section: each trigger policy against its matched random control (`matched_random`)."""

from __future__ import annotations

import pandas as pd

from experiments.report.formatting import ci, label, markdown_table, pct, points

INTRO = (
  "Each trigger policy is compared with `random:P` at the trigger's realized rate P (teacher-written "
  "steps over step starts), on the same (seed, problem) units: trigger - control in accuracy points, "
  "95% CI resampling problems. A CI above 0 means the trigger's choice of *when* helps beyond how "
  "often it calls the teacher."
)


def controls_section(controls: pd.DataFrame) -> list[str]:
  if controls.empty:
    return ["No matched controls in these results (set `matched_random = True` with a trigger policy).", ""]
  rows = []
  for r in controls.itertuples():
    verdict = (
      "trigger better" if r.diff_ci_low > 0 else "control better" if r.diff_ci_high < 0 else "not separated"
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

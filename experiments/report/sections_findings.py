"""The report.md findings: per configuration, in words, what the numbers show.

The student alone against the teacher writing everything, the best guided policy with its CI, the
gain at each step K and whether step 1 is the best timing, said plainly even when the sample
contradicts the paper (e.g. when a later step gains more).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from decode.core.policy import STUDENT_ONLY, TEACHER_ONLY
from experiments.report.formatting import ci, missing, pct, points
from experiments.report.summary_views import baseline_row, summary_row


def findings_section(s: pd.DataFrame) -> list[str]:
  """One `###` block of findings per (task, student, teacher, checkpoint) with guided rows."""
  parts = []
  configs = s[s.policy != STUDENT_ONLY][["task", "student", "teacher", "checkpoint"]].drop_duplicates()
  if configs.empty:
    parts += ["Only student-only rows: nothing to compare.", ""]
  for c in configs.itertuples(index=False):
    head = f"### {c.task} / student {c.student}"
    head += f" / teacher {c.teacher}" if c.teacher else ""
    head += f" / checkpoint {c.checkpoint}" if c.checkpoint else ""
    parts += [head, "", *_config_findings(s, c.task, c.student, c.teacher, c.checkpoint), ""]
  return parts


def _config_findings(s: pd.DataFrame, task: str, student: str, teacher: str, checkpoint: str) -> list[str]:
  """Bullet points for one (task, student, teacher, checkpoint): baseline, best policy, timing."""
  rows = s[(s.task == task) & (s.student == student) & (s.teacher == teacher) & (s.checkpoint == checkpoint)]
  base = baseline_row(s, task, student, teacher, checkpoint)
  always = summary_row(s, task, student, teacher, checkpoint, TEACHER_ONLY)
  out = []
  ref = f"- Student alone: {pct(base.accuracy) if base is not None else 'n/a (no never rows)'}"
  if always is not None:
    ref += f"; teacher writes everything (`always`): {pct(always.accuracy)}"
  out.append(ref + ".")
  guided = rows[~rows.policy.isin([STUDENT_ONLY, TEACHER_ONLY])]
  if not guided.empty:
    best = guided.sort_values(["accuracy", "teacher_fraction"], ascending=[False, True]).iloc[0]
    line = (
      f"- Best guided policy: `{best.policy}` at {pct(best.accuracy)} "
      f"(gain {points(best.gain_points)} points, 95% CI {ci(best.gain_ci_low, best.gain_ci_high)}"
      + (f", {best.gain_rel_pct:+.0f}% relative" if not missing(best.gain_rel_pct) else "")
      + f"; teacher wrote {pct(best.teacher_fraction)} of tokens)."
    )
    if not missing(best.gain_points) and best.gain_points <= 0:
      line += " No guided policy beats the student alone here."
    if always is not None and best.accuracy > always.accuracy:
      line += " It beats the teacher writing everything."
    out.append(line)
  steps = rows[rows.step_k.notna()].sort_values("step_k")
  if not steps.empty:
    gains = ", ".join(f"K={int(r.step_k)}: {points(r.gain_points)}" for r in steps.itertuples())
    out.append(f"- Gain over the student alone (points) when the teacher writes step K: {gains}.")
    out.append(_timing_sentence(steps))
  return [line for line in out if line]


def _timing_sentence(steps: pd.DataFrame) -> str:
  """Is step 1 the best time for the teacher to step in? Said plainly either way."""
  first = steps[steps.step_k == 1]
  later = steps[steps.step_k > 1]
  if first.empty or later.empty or first.gain_points.isna().all():
    return "" if not first.empty else "- No `step:1` rows, so the first-step effect is not measured here."
  f = first.iloc[0]
  top = later.sort_values("gain_points", ascending=False).iloc[0]
  k = int(top.step_k)
  if f.gain_points > top.gain_points:
    text = (
      f"- Step 1 is the best timing: {points(f.gain_points)} points vs at most "
      f"{points(top.gain_points)} for a later step (`step:{k}`)."
    )
  elif f.gain_points == top.gain_points:
    text = f"- Step 1 ties with `step:{k}` ({points(f.gain_points)} points)."
  else:
    text = (
      f"- Step 1 is NOT the best timing here: `step:{k}` gains {points(top.gain_points)} points "
      f"vs {points(f.gain_points)} for `step:1`."
    )
  overlap = not (f.gain_ci_low > top.gain_ci_high or top.gain_ci_low > f.gain_ci_high)
  text += (
    " Their 95% CIs overlap, so this sample does not separate them."
    if overlap
    else " Their 95% CIs do not overlap."
  )
  g = steps.gain_points.to_numpy(dtype=float)
  if len(g) > 2:
    text += (
      " Gains never rise as K grows."
      if np.all(np.diff(g) <= 0)
      else " Gains do not fall monotonically with K."
    )
  return text

"""The report.md findings: per configuration, in words, what the numbers show.

The student alone against the teacher writing everything, the best guided policy with its CI, the
gain at each step K and whether step 1 is the best timing, said plainly even when the sample
contradicts the paper (e.g. when a later step gains more). Whether two policies differ is always read
off their paired difference on the same (seed, problem) units (timing.timing_differences,
versus.versus_reference), never off the overlap of two marginal CIs: paired units share most of their
noise, so marginal CIs can overlap while the paired CI excludes 0.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from decode.core.policy import STUDENT_ONLY, TEACHER_ONLY
from experiments.report.formatting import NOT_AVAILABLE, ci, missing, paired_reading, pct, points
from experiments.report.outputs import CONFIG_COLUMNS
from experiments.report.summary_views import baseline_row, summary_row

NOT_TESTED = "not tested"  # no paired difference for the two policies (no unit ran both)


def _of_config(frame: pd.DataFrame | None, config: tuple) -> pd.DataFrame:
  """The rows of a keyed frame (missing labels as '') for one (task, student, teacher, checkpoint)."""
  if frame is None or frame.empty:
    return pd.DataFrame(columns=[*CONFIG_COLUMNS, "step_k", "policy"])
  return frame[(frame[CONFIG_COLUMNS] == pd.Series(dict(zip(CONFIG_COLUMNS, config)))).all(axis=1)]


def findings_section(
  s: pd.DataFrame, timing: pd.DataFrame | None = None, versus: pd.DataFrame | None = None
) -> list[str]:
  """One `###` block of findings per (task, student, teacher, checkpoint) with guided rows.

  `timing` (timing_differences) and `versus` (versus_reference against `always`), keyed like `s`,
  give the paired verdicts; without them a comparison says it is not tested rather than guess.
  """
  parts = []
  configs = s[s.policy != STUDENT_ONLY][CONFIG_COLUMNS].drop_duplicates()
  if configs.empty:
    parts += ["Only student-only rows: nothing to compare.", ""]
  for c in configs.itertuples(index=False):
    head = f"### {c.task} / student {c.student}"
    head += f" / teacher {c.teacher}" if c.teacher else ""
    head += f" / checkpoint {c.checkpoint}" if c.checkpoint else ""
    body = _config_findings(s, _of_config(timing, tuple(c)), _of_config(versus, tuple(c)), *c)
    parts += [head, "", *body, ""]
  return parts


def _config_findings(
  s: pd.DataFrame,
  diffs: pd.DataFrame,
  versus: pd.DataFrame,
  task: str,
  student: str,
  teacher: str,
  checkpoint: str,
) -> list[str]:
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
      f"({_paired_accuracy(best)}gain {points(best.gain_points)} points, 95% CI {ci(best.gain_ci_low, best.gain_ci_high)}"
      + (f", {best.gain_rel_pct:+.0f}% relative" if not missing(best.gain_rel_pct) else "")
      + f"; teacher wrote {pct(best.teacher_fraction)} of tokens)."
    )
    if not missing(best.gain_points) and best.gain_points <= 0:
      line += " No guided policy beats the student alone here."
    if always is not None and best.accuracy > always.accuracy:
      line += _versus_always(versus[versus.policy == best.policy])
    out.append(line)
  steps = rows[rows.step_k.notna()].sort_values("step_k")
  if not steps.empty:
    gains = ", ".join(f"K={int(r.step_k)}: {points(r.gain_points)}" for r in steps.itertuples())
    out.append(f"- Gain over the student alone (points) when the teacher writes step K: {gains}.")
    out.append(_timing_sentence(steps, diffs))
  return [line for line in out if line]


def _paired_accuracy(r: pd.Series) -> str:
  """The accuracy on the rows the gain is over, when not every scored row has a never row."""
  if r.n_paired == r.n or not r.n_paired:
    return ""
  return f"on the {r.n_paired} of {r.n} rows paired with the student alone: {pct(r.paired_accuracy)}, "


def _versus_always(hit: pd.DataFrame) -> str:
  """Does the best guided policy beat the teacher writing everything? Read off the paired difference."""
  if hit.empty or missing(hit.iloc[0].diff_ci_low):
    return (
      " Its accuracy is above the teacher writing everything's; no (seed, problem) unit ran both, so "
      "the two are not compared."
    )
  v = hit.iloc[0]
  paired = f"paired over {v.n} (seed, problem) units, {points(v.diff_points)} points (95% CI {ci(v.diff_ci_low, v.diff_ci_high)})"
  reading = paired_reading(v.diff_ci_low, v.diff_ci_high, "guided", "always")
  if reading == "guided better":
    return f" It beats the teacher writing everything: {paired}."
  if reading == "always better":
    return f" Its accuracy is above the teacher writing everything's, yet {paired}: `always` is better."
  return f" Its accuracy is above the teacher writing everything's, but {paired}: the sample does not separate them."


def _timing_sentence(steps: pd.DataFrame, diffs: pd.DataFrame) -> str:
  """Is step 1 the best time for the teacher to step in? Point estimates, then the paired verdict."""
  first = steps[steps.step_k == 1]
  later = steps[steps.step_k > 1]
  if first.empty or later.empty or first.gain_points.isna().all():
    return "" if not first.empty else "- No `step:1` rows, so the first-step effect is not measured here."
  f = first.iloc[0]
  top = later.sort_values("gain_points", ascending=False).iloc[0]
  k = int(top.step_k)
  hit = diffs[diffs.step_k == k]
  d = hit.iloc[0] if not hit.empty else None
  reading = NOT_TESTED if d is None else paired_reading(d.diff_ci_low, d.diff_ci_high, "step 1", f"step {k}")
  reading = NOT_TESTED if reading == NOT_AVAILABLE else reading
  if f.gain_points > top.gain_points:
    lead = "Step 1 is the best timing" if reading == "step 1 better" else "Step 1 gains most in this sample"
    text = f"- {lead}: {points(f.gain_points)} points vs at most {points(top.gain_points)} for a later step (`step:{k}`)."
  elif f.gain_points == top.gain_points:
    text = f"- Step 1 ties with `step:{k}` ({points(f.gain_points)} points)."
  else:
    lead = (
      "Step 1 is NOT the best timing here"
      if reading == f"step {k} better"
      else "A later step gains more in this sample"
    )
    text = (
      f"- {lead}: `step:{k}` gains {points(top.gain_points)} points vs {points(f.gain_points)} for `step:1`."
    )
  if reading == NOT_TESTED:
    text += f" No (seed, problem) unit ran both `step:1` and `step:{k}`, so they are not compared paired."
  else:
    text += (
      f" Paired over the {d.n_units} (seed, problem) units that ran both, step:1 - step:{k} is "
      f"{points(d.diff_points)} points (95% CI {ci(d.diff_ci_low, d.diff_ci_high)}): "
      + (
        "this sample does not separate them."
        if reading == "not separated"
        else f"{reading.removesuffix(' better').capitalize()} is better."
      )
    )
  g = steps.gain_points.to_numpy(dtype=float)
  if len(g) > 2:
    text += (
      " In point estimates, gains never rise as K grows."
      if np.all(np.diff(g) <= 0)
      else " In point estimates, gains do not fall monotonically with K."
    )
  return text

"""Write summary.csv, report.md and the PNG plots for one sweep's output directory.

The narrative states what the numbers show, including when they contradict the paper
(e.g. when teacher help at step 1 is not the best timing). Every file is written atomically
(experiments.files: temp file in the same directory, fsync, os.replace), so a reader never sees
half a report.

CLI: `python -m experiments.report OUTPUT_DIR` regenerates everything from the results files.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd

from experiments.files import atomic_write_bytes, atomic_write_text
from experiments.report import analysis
from experiments.report.plots import (
  baseline_row,
  ci,
  keyed,
  label,
  markdown_table,
  missing,
  pct,
  plot_accuracy_vs_step,
  plot_accuracy_vs_step_by_checkpoint,
  plot_accuracy_vs_teacher_fraction,
  points,
  summary_row,
)

PLOT_STEP = "accuracy_vs_step.png"
PLOT_FRACTION = "accuracy_vs_teacher_fraction.png"
PLOT_CHECKPOINTS = "accuracy_vs_step_by_checkpoint.png"


# --------------------------------------------------------------------------- narrative


def _config_findings(s: pd.DataFrame, task: str, student: str, teacher: str, checkpoint: str) -> list[str]:
  """Bullet points for one (task, student, teacher, checkpoint): baseline, best policy, timing."""
  rows = s[(s.task == task) & (s.student == student) & (s.teacher == teacher) & (s.checkpoint == checkpoint)]
  base = baseline_row(s, task, student, teacher, checkpoint)
  always = summary_row(s, task, student, teacher, checkpoint, "always")
  out = []
  ref = f"- Student alone: {pct(base.accuracy) if base is not None else 'n/a (no never rows)'}"
  if always is not None:
    ref += f"; teacher writes everything (`always`): {pct(always.accuracy)}"
  out.append(ref + ".")
  guided = rows[~rows.policy.isin(["never", "always"])]
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


def render_markdown(df: pd.DataFrame, summary: pd.DataFrame, plots: dict[str, str], source: str) -> str:
  """The report text; `plots` maps a caption to an image path relative to report.md."""
  s = keyed(summary)
  parts = [
    "# Teacher guidance report",
    "",
    f"Generated from {len(df)} result rows in `{source}`. Accuracy is exact-match on the final "
    "number; gains are paired with the student-only (`never`) row of the same problem and seed, "
    "with 95% bootstrap CIs resampling problems.",
    "",
  ]

  sizes = analysis.dataset_sizes(df)
  parts += ["## Data", "", markdown_table(list(sizes.columns), sizes.itertuples(index=False)), ""]

  never = s[s.policy == "never"]
  parts += ["## Student-only accuracy", ""]
  if never.empty:
    parts += ["No `never` rows: gains, rescue and harm cannot be computed.", ""]
  else:
    parts += [
      markdown_table(
        ["task", "student", "teacher", "checkpoint", "n", "accuracy"],
        [
          [r.task, r.student, label(r.teacher), label(r.checkpoint), r.n, pct(r.accuracy)]
          for r in never.itertuples()
        ],
      ),
      "",
    ]

  parts += ["## Findings", ""]
  configs = s[s.policy != "never"][["task", "student", "teacher", "checkpoint"]].drop_duplicates()
  if configs.empty:
    parts += ["Only student-only rows: nothing to compare.", ""]
  for c in configs.itertuples(index=False):
    head = f"### {c.task} / student {c.student}"
    head += f" / teacher {c.teacher}" if c.teacher else ""
    head += f" / checkpoint {c.checkpoint}" if c.checkpoint else ""
    parts += [head, "", *_config_findings(s, c.task, c.student, c.teacher, c.checkpoint), ""]

  parts += ["## Plots", ""]
  parts += [f"![{caption}]({path})\n" for caption, path in plots.items()]

  if PLOT_CHECKPOINTS in plots.values():
    step1 = s[(s.step_k == 1) & (s.checkpoint != "")]
    if not step1.empty:
      parts += [
        "### First-step gain by checkpoint",
        "",
        markdown_table(
          ["task", "student", "teacher", "checkpoint", "student alone", "step:1", "gain (points)", "95% CI"],
          [
            [
              r.task,
              r.student,
              label(r.teacher),
              r.checkpoint,
              pct(r.baseline_accuracy),
              pct(r.accuracy),
              points(r.gain_points),
              ci(r.gain_ci_low, r.gain_ci_high),
            ]
            for r in step1.itertuples()
          ],
        ),
        "",
      ]

  parts += [
    "## Summary",
    "",
    markdown_table(
      [
        "task",
        "student",
        "teacher",
        "checkpoint",
        "policy",
        "n",
        "accuracy",
        "gain (points)",
        "95% CI",
        "relative",
        "teacher tokens",
        "switches",
        "leakage",
      ],
      [
        [
          r.task,
          r.student,
          label(r.teacher),
          label(r.checkpoint),
          f"`{r.policy}`",
          r.n,
          pct(r.accuracy),
          points(r.gain_points),
          ci(r.gain_ci_low, r.gain_ci_high),
          "n/a" if missing(r.gain_rel_pct) else f"{r.gain_rel_pct:+.0f}%",
          pct(r.teacher_fraction),
          f"{r.mean_switches:.2f}",
          pct(r.leakage_rate),
        ]
        for r in s.itertuples()
      ],
    ),
    "",
  ]

  guided = s[s.policy != "never"]
  parts += [
    "## Rescue and harm",
    "",
    "Rescue: the student alone was wrong and the guided run right; harm: the reverse.",
    "",
  ]
  parts += [
    markdown_table(
      ["task", "student", "teacher", "checkpoint", "policy", "paired", "rescue", "harm", "net"],
      [
        [
          r.task,
          r.student,
          label(r.teacher),
          label(r.checkpoint),
          f"`{r.policy}`",
          r.n_paired,
          r.rescue,
          r.harm,
          f"{int(r.rescue) - int(r.harm):+d}",
        ]
        for r in guided.itertuples()
      ],
    )
    if not guided.empty
    else "No guided rows.",
    "",
  ]

  parts += ["## Leakage", "", _leakage_text(df, s), ""]
  return "\n".join(parts)


def _leakage_text(df: pd.DataFrame, s: pd.DataFrame) -> str:
  """How often the teacher's own text already contains the gold answer (as a whole number)."""
  d = analysis.prepare(df)
  wrote = d[d.teacher_text.str.len() > 0]
  if wrote.empty:
    return "No row records any teacher text (`teacher_text`), so leakage is not measured."
  leaked = [analysis.answer_leaked(t, a) for t, a in zip(wrote.teacher_text, wrote.answer)]
  n_leak = int(np.sum(leaked))
  partial = wrote[wrote.policy != "always"]
  n_partial = int(
    np.sum([analysis.answer_leaked(t, a) for t, a in zip(partial.teacher_text, partial.answer)])
  )
  lines = [
    f"The gold answer appears as a number in the teacher's text in {n_leak} of {len(wrote)} rows "
    f"where the teacher wrote ({pct(n_leak / len(wrote))})."
  ]
  if len(partial):
    lines.append(
      f"Excluding `always` (where the teacher writes the final answer by design): "
      f"{n_partial} of {len(partial)} ({pct(n_partial / len(partial))}). "
      + (
        "Gains on these rows may partly be the teacher handing over the answer rather than a better start."
        if n_partial
        else "So the guided gains are not the teacher handing over the answer."
      )
    )
  flagged = s[(s.leakage_rate > 0) & (s.policy != "always")]
  if not flagged.empty:
    lines += [
      "",
      markdown_table(
        ["task", "student", "teacher", "checkpoint", "policy", "leakage rate"],
        [
          [r.task, r.student, label(r.teacher), label(r.checkpoint), f"`{r.policy}`", pct(r.leakage_rate)]
          for r in flagged.itertuples()
        ],
      ),
    ]
  return "\n".join(lines)


# --------------------------------------------------------------------------- entry points


def write_report(output_dir: str | Path, df: pd.DataFrame | None = None) -> dict[str, Path]:
  """Write summary.csv, report.md and the plots into `output_dir`; returns name -> path.

  `df` defaults to every results*.jsonl in `output_dir` (see analysis.load_results). Keys:
  'summary', 'report', 'accuracy_vs_step', 'accuracy_vs_teacher_fraction' and, when the rows
  carry more than one checkpoint label, 'accuracy_vs_step_by_checkpoint'.
  """
  output_dir = Path(output_dir)
  if df is None:
    df = analysis.load_results(output_dir)
  if len(df) == 0:
    raise FileNotFoundError(f"no result rows for {output_dir}")
  summary = analysis.summarize(df)
  paths: dict[str, Path] = {"summary": output_dir / "summary.csv"}
  atomic_write_text(paths["summary"], summary.to_csv(index=False))

  plots = {
    "Accuracy vs intervention step": (PLOT_STEP, plot_accuracy_vs_step),
    "Accuracy vs teacher-token fraction": (PLOT_FRACTION, plot_accuracy_vs_teacher_fraction),
  }
  if len(analysis.checkpoints_of(df)) > 1:
    plots["Accuracy vs intervention step, per checkpoint"] = (
      PLOT_CHECKPOINTS,
      plot_accuracy_vs_step_by_checkpoint,
    )
  for name, plot in plots.values():
    paths[name.removesuffix(".png")] = output_dir / name
    atomic_write_bytes(output_dir / name, plot(summary))

  text = render_markdown(
    df, summary, {caption: name for caption, (name, _) in plots.items()}, output_dir.name
  )
  paths["report"] = output_dir / "report.md"
  atomic_write_text(paths["report"], text)
  return paths


def main(argv: Sequence[str] | None = None) -> int:
  parser = argparse.ArgumentParser(prog="python -m experiments.report", description=__doc__.splitlines()[0])
  parser.add_argument("output_dir", type=Path, help="directory holding results*.jsonl")
  args = parser.parse_args(argv)
  try:
    if not args.output_dir.is_dir():
      raise FileNotFoundError(f"{args.output_dir} is not a directory")
    paths = write_report(args.output_dir)
  except FileNotFoundError as err:  # nothing to report on
    print(f"error: {err}", file=sys.stderr)
    return 2
  except ValueError as err:  # e.g. a corrupt results line: the message names file and line
    print(f"error: {err}", file=sys.stderr)
    return 1
  for name, path in paths.items():
    print(f"{name}: {path}")
  return 0


if __name__ == "__main__":
  sys.exit(main())

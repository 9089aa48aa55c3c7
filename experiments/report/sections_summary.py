"""report.md sections that show the summary table as it is: the data, the student alone, the plots
(with the first-step gain per checkpoint), the full summary and the rescue/harm counts.

Each `*_section` function returns the lines under its `## ` heading (markdown.render_markdown adds it).
"""

from __future__ import annotations

import pandas as pd

from decode.core.policy import STUDENT_ONLY
from experiments.report import analysis
from experiments.report.formatting import (
  NOT_AVAILABLE,
  ci,
  label,
  markdown_table,
  missing,
  pct,
  points,
  policy_cells,
)
from experiments.report.outputs import PLOT_CHECKPOINTS


def data_section(df: pd.DataFrame, s: pd.DataFrame) -> list[str]:
  """Rows, problems, seeds, policies and models per task; the rows left out for lacking a correctness value."""
  sizes = analysis.dataset_sizes(df)
  parts = [markdown_table(list(sizes.columns), sizes.itertuples(index=False)), ""]
  n_unscored = int(sizes.unscored.sum())
  if n_unscored:
    left = s[s.n_unscored > 0]
    parts += [
      f"{n_unscored} of {int(sizes.rows.sum())} rows carry no correctness value (an `error`, e.g. "
      "non-finite logits, or `correct` missing): they are left out of every accuracy, gain and rate "
      "below, never read as right or wrong (`n_unscored` in summary.csv; `n` counts the scored rows).",
      "",
      markdown_table(
        ["task", "student", "teacher", "checkpoint", "policy", "scored", "left out", "of them errors"],
        [[*policy_cells(r), r.n, r.n_unscored, r.n_errors] for r in left.itertuples()],
      ),
      "",
    ]
  return parts


def _accuracy(r: object) -> str:
  """The accuracy, and the accuracy on the rows the gain is over when those are fewer (both stated)."""
  if r.n_paired == r.n or not r.n_paired:
    return pct(r.accuracy)
  return f"{pct(r.accuracy)} ({pct(r.paired_accuracy)} on {r.n_paired} paired)"


def student_only_section(s: pd.DataFrame) -> list[str]:
  """The `never` rows' accuracy, the level every gain is measured from."""
  never = s[s.policy == STUDENT_ONLY]
  if never.empty:
    return ["No `never` rows: gains, rescue and harm cannot be computed.", ""]
  return [
    markdown_table(
      ["task", "student", "teacher", "checkpoint", "n", "accuracy"],
      [
        [r.task, r.student, label(r.teacher), label(r.checkpoint), r.n, pct(r.accuracy)]
        for r in never.itertuples()
      ],
    ),
    "",
  ]


def plots_section(s: pd.DataFrame, plots: dict[str, str]) -> list[str]:
  """The images (caption -> path) and, with the per-checkpoint plot, the first-step gain per checkpoint."""
  parts = [f"![{caption}]({path})\n" for caption, path in plots.items()]
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
              pct(r.paired_accuracy),  # the rows the baseline and the gain are over
              points(r.gain_points),
              ci(r.gain_ci_low, r.gain_ci_high),
            ]
            for r in step1.itertuples()
          ],
        ),
        "",
      ]
  return parts


def summary_section(s: pd.DataFrame) -> list[str]:
  """Every summary row: accuracy, gain with its CI, teacher tokens, switches and leakage."""
  return [
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
          *policy_cells(r),
          r.n,
          _accuracy(r),
          points(r.gain_points),
          ci(r.gain_ci_low, r.gain_ci_high),
          NOT_AVAILABLE if missing(r.gain_rel_pct) else f"{r.gain_rel_pct:+.0f}%",
          pct(r.teacher_fraction),
          f"{r.mean_switches:.2f}",
          pct(r.leakage_rate),
        ]
        for r in s.itertuples()
      ],
    ),
    "",
  ]


def rescue_harm_section(s: pd.DataFrame) -> list[str]:
  """Per guided policy, the paired units it rescued and harmed."""
  guided = s[s.policy != STUDENT_ONLY]
  parts = ["Rescue: the student alone was wrong and the guided run right; harm: the reverse.", ""]
  parts += [
    markdown_table(
      ["task", "student", "teacher", "checkpoint", "policy", "paired", "rescue", "harm", "net"],
      [
        [
          *policy_cells(r),
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
  return parts

"""report.md: the sections in reading order, each written by its section module.

The narrative states what the numbers show, including when they contradict the paper (e.g. when
teacher help at step 1 is not the best timing).
"""

from __future__ import annotations

import pandas as pd

from experiments.report import analysis
from experiments.report.controls import matched_controls
from experiments.report.sections_answers import copy_section, leakage_text
from experiments.report.sections_controls import controls_section
from experiments.report.sections_findings import findings_section
from experiments.report.sections_summary import (
  data_section,
  plots_section,
  rescue_harm_section,
  student_only_section,
  summary_section,
)
from experiments.report.sections_timing import counterfactual_section, no_leak_section
from experiments.report.summary_views import keyed
from experiments.report.versus import versus_reference


def render_markdown(
  df: pd.DataFrame,
  summary: pd.DataFrame,
  plots: dict[str, str],
  source: str,
  timing: pd.DataFrame | None = None,
  rescue: pd.DataFrame | None = None,
) -> str:
  """The report text; `plots` maps a caption to an image path relative to report.md.

  `timing` (analysis.timing_differences) and `rescue` (analysis.earliest_rescue_distribution) are
  computed from `df` when not given. The findings read every comparison of two policies off a paired
  difference: step 1 vs step K from `timing`, the best guided policy vs `always` from versus_reference.
  """
  if timing is None:
    timing = analysis.timing_differences(df)
  if rescue is None:
    rescue = analysis.earliest_rescue_distribution(analysis.counterfactuals(df))
  s = keyed(summary)
  parts = [
    "# Teacher guidance report",
    "",
    f"Generated from {len(df)} result rows in `{source}`. Accuracy is exact-match on the final "
    "number; gains are paired with the student-only (`never`) row of the same problem and seed, "
    "with 95% bootstrap CIs resampling problems. Two policies are told apart only by their paired "
    "difference on the same (seed, problem) units, never by whether their own CIs overlap; rows "
    "without a correctness value are left out and counted (Data).",
    "",
  ]
  sections = [
    ("Data", data_section(df, s)),
    ("Student-only accuracy", student_only_section(s)),
    ("Findings", findings_section(s, keyed(timing), keyed(versus_reference(df)))),
    ("Plots", plots_section(s, plots)),
    ("Summary", summary_section(s)),
    ("Rescue and harm", rescue_harm_section(s)),
    ("Leakage", [leakage_text(df, s), ""]),
    ("Timing without leakage", no_leak_section(s, keyed(timing))),
    ("Per-problem counterfactuals", counterfactual_section(keyed(rescue))),
    ("Few-shot answer copying", copy_section(s)),
    ("Matched-rate controls", controls_section(matched_controls(analysis.prepare(df)))),
  ]
  for heading, body in sections:
    parts += [f"## {heading}", "", *body]
  return "\n".join(parts)

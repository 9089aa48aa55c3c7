"""The summary table (summary.csv): one row per (task, student, teacher, checkpoint, policy).

Each row holds the policy's accuracy, its paired gain over the student alone with a bootstrap CI
(stats), the leakage-free columns (timing), token shares, rescue and harm counts, the leakage rate
and the exemplar copy rates (answer_checks). `checkpoints_of` and `dataset_sizes` describe the rows.

Units: `accuracy`, `baseline_accuracy`, `teacher_fraction`, `leakage_rate` and the exemplar rates
are fractions in [0, 1]; `gain_points`, `gain_no_leak_points` and their CI bounds are percentage
points; `gain_rel_pct` is the relative gain in percent of the baseline accuracy.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from experiments.report.answer_checks import answer_leaked, exemplar_rates
from experiments.report.loading import GROUP_KEYS, NO_LABEL, prepare
from experiments.report.policies import (
  intervention_step,
  last_teacher_step,
  natural_sort_key,
  policy_sort_key,
)
from experiments.report.stats import attach_baseline, paired_gain
from experiments.report.timing import NO_LEAK_COLUMNS, no_leak_columns
from experiments.sweep.calibration import realized_rate

SUMMARY_COLUMNS = [
  "task",
  "student",
  "teacher",
  "checkpoint",
  "policy",
  "step_k",
  "n",
  "n_errors",
  "n_problems",
  "n_paired",
  "accuracy",
  "baseline_accuracy",
  "gain_points",
  "gain_rel_pct",
  "gain_ci_low",
  "gain_ci_high",
  "n_no_leak",
  "accuracy_no_leak",
  "gain_no_leak_points",
  "gain_no_leak_ci_low",
  "gain_no_leak_ci_high",
  "teacher_fraction",
  "realized_rate",
  "mean_student_tokens",
  "mean_teacher_tokens",
  "mean_switches",
  "rescue",
  "harm",
  "leakage_rate",
  "exemplar_copy_rate",
  "gold_exemplar_rate",
]


EXEMPLAR_COLUMNS = ["exemplar_copy_rate", "gold_exemplar_rate"]
# Float columns a group may leave unmeasured (None): the rows lack the field they need.
NOT_MEASURED_COLUMNS = [
  "leakage_rate",
  *EXEMPLAR_COLUMNS,
  *(c for c in NO_LEAK_COLUMNS if c != "n_no_leak"),  # n_no_leak: an Int64 column, <NA>
]


def _summarize_group(
  g: pd.DataFrame, n_boot: int, seed: int, has_text: bool, last_step: int | None
) -> dict[str, Any]:
  correct = g["correct"].to_numpy(dtype=float)
  paired = g[g["base_correct"].notna()]
  pol = paired["correct"].to_numpy(dtype=float)
  base = paired["base_correct"].to_numpy(dtype=float)
  n_paired = int(pol.size)
  base_acc, gain, low, high = paired_gain(g, n_boot, seed)
  rel = 100.0 * gain / base_acc if base_acc > 0 else float("nan")
  tokens_t = float(g["teacher_tokens"].sum())
  tokens_all = tokens_t + float(g["student_tokens"].sum())
  leaks = [answer_leaked(t, a) for t, a in zip(g["teacher_text"], g["answer"])]
  return {
    "n": int(len(g)),
    "n_errors": int(g["error"].notna().sum()),  # rows stopped by non-finite logits (scored wrong)
    "n_problems": int(g["problem_id"].nunique()),
    "n_paired": n_paired,
    "accuracy": float(correct.mean()),
    "baseline_accuracy": base_acc,
    "gain_points": 100.0 * gain,
    "gain_rel_pct": rel,
    "gain_ci_low": 100.0 * low,
    "gain_ci_high": 100.0 * high,
    **no_leak_columns(g, last_step, n_boot, seed),
    "teacher_fraction": tokens_t / tokens_all if tokens_all > 0 else 0.0,
    # teacher-written steps over step starts (what a trigger's matched random control reproduces)
    "realized_rate": realized_rate(g[["step_ids", "intervention_steps"]].to_dict("records")),
    "mean_student_tokens": float(g["student_tokens"].mean()),
    "mean_teacher_tokens": float(g["teacher_tokens"].mean()),
    "mean_switches": float(g["switches"].mean()),
    "rescue": int(((base == 0) & (pol == 1)).sum()),
    "harm": int(((base == 1) & (pol == 0)).sum()),
    "leakage_rate": float(np.mean(leaks)) if has_text else None,
    **dict(zip(EXEMPLAR_COLUMNS, exemplar_rates(g) or (None, None))),
  }


def summarize(df: pd.DataFrame, n_boot: int = 2000, seed: int = 0) -> pd.DataFrame:
  """One row per (task, student, teacher, checkpoint, policy); see the module docstring for units.

  Missing teacher/checkpoint labels come back as None; leakage_rate is missing when the rows
  carry no teacher_text column (not measured, rather than "no leak"). Rows are sorted for reading:
  by task, student, teacher, checkpoint (natural order), then never, step:1..K, ..., always.

  A value not measured (None from `_summarize_group`: leakage, exemplar rates, no-leak columns) is
  NaN in the table, pandas' missing value, as an undefined one is: each column keeps one dtype, and
  summary.csv writes both as an empty cell; `n_no_leak` is <NA> (an Int64 column).
  """
  if len(df) == 0:
    return pd.DataFrame(columns=SUMMARY_COLUMNS)
  d = attach_baseline(prepare(df))
  records = []
  for key, g in d.groupby(GROUP_KEYS, sort=False):
    rec = dict(zip(GROUP_KEYS, key))
    rec["step_k"] = intervention_step(rec["policy"])
    rec.update(
      _summarize_group(
        g, n_boot, seed, has_text="teacher_text" in df.columns, last_step=last_teacher_step(rec["policy"])
      )
    )
    records.append(rec)
  records.sort(
    key=lambda r: (
      r["task"],
      r["student"],
      natural_sort_key(r["teacher"]),
      natural_sort_key(r["checkpoint"]),
      policy_sort_key(r["policy"]),
    )
  )
  out = pd.DataFrame.from_records(records, columns=SUMMARY_COLUMNS)
  out["step_k"] = pd.to_numeric(out["step_k"], errors="coerce").astype(float)
  out["n_no_leak"] = pd.to_numeric(out["n_no_leak"], errors="coerce").astype("Int64")  # <NA>: not measured
  for col in NOT_MEASURED_COLUMNS:  # None: not measured -> NaN
    out[col] = out[col].astype(float)
  for col in ("teacher", "checkpoint"):
    out[col] = pd.Series([None if v == NO_LABEL else v for v in out[col]], dtype=object)
  return out


def checkpoints_of(df: pd.DataFrame) -> list[str]:
  """Distinct non-missing checkpoint labels, in natural order."""
  if "checkpoint" not in df.columns:
    return []
  labels = {
    str(v)
    for v in df["checkpoint"]
    if v is not None and not (isinstance(v, float) and np.isnan(v)) and v != NO_LABEL
  }
  return sorted(labels, key=natural_sort_key)


def dataset_sizes(df: pd.DataFrame) -> pd.DataFrame:
  """Per task: rows, problems, seeds, policies, students, teachers, checkpoints."""
  d = prepare(df)
  return (
    d.groupby("task")
    .agg(
      rows=("problem_id", "size"),
      problems=("problem_id", "nunique"),
      seeds=("seed", "nunique"),
      policies=("policy", "nunique"),
      students=("student", "nunique"),
      teachers=("teacher", lambda s: int(s[s != NO_LABEL].nunique())),
      checkpoints=("checkpoint", lambda s: int(s[s != NO_LABEL].nunique())),
    )
    .reset_index()
  )

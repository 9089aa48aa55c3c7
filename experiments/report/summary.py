"""The summary table (summary.csv): one row per (task, student, teacher, checkpoint, policy).

Each row holds the policy's accuracy, its paired gain over the student alone with a bootstrap CI
(stats), the leakage-free columns (timing), token shares, rescue and harm counts, the leakage rate
and the exemplar copy rates (answer_checks). `checkpoints_of` and `dataset_sizes` describe the rows.

Denominators: every number is over the group's scored rows (loading.scored_rows); `n` counts them and
`n_unscored` the rows left out for lacking a correctness value (`n_errors` of them stopped early).
`accuracy` is over all `n` scored rows; `gain_points` over the `n_paired` rows that have a never row,
where `paired_accuracy` - `baseline_accuracy` is the gain exactly. A matched random control names its
trigger (`matched_to`) and carries the trigger's realized rate beside its own (`matched_trigger_rate`).
A control whose spec the config also lists (or that two triggers share) is one summary row, each unit
counted once (loading.one_row_per_unit): `listed` says the config lists it, `matched_to` which
triggers it controls.

Units: `accuracy`, `paired_accuracy`, `baseline_accuracy`, `teacher_fraction`, `leakage_rate`, the
realized rates and the exemplar rates are fractions in [0, 1]; `gain_points`, `gain_no_leak_points`,
`gain_no_leak_common_points` and their CI bounds are percentage points; `gain_rel_pct` is the relative
gain in percent of the baseline accuracy.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from experiments.report.answer_checks import exemplar_rates, leaked_rows
from experiments.report.loading import (
  CONFIG_KEYS,
  GROUP_KEYS,
  NO_LABEL,
  absent,
  is_control,
  one_row_per_unit,
  prepare,
  scored_rows,
)
from experiments.report.policies import (
  intervention_step,
  last_teacher_step,
  natural_sort_key,
  policy_sort_key,
)
from experiments.report.stats import attach_baseline, paired_gain
from experiments.report.timing import COMMON_COLUMNS, NO_LEAK_COLUMNS, common_no_leak_table, no_leak_columns
from experiments.sweep.calibration import realized_rate

# The text bridge's costs per row (teacher tokens read, teacher calls); not measured on loop rows.
BRIDGE_COLUMNS = ["mean_teacher_read", "mean_round_trips"]
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
  # added later, at the end so positional readers of older summaries keep working
  "n_unscored",
  "paired_accuracy",
  *COMMON_COLUMNS,
  "matched_to",
  "matched_trigger_rate",
  *BRIDGE_COLUMNS,
  "listed",
]


EXEMPLAR_COLUMNS = ["exemplar_copy_rate", "gold_exemplar_rate"]
# Float columns a group may leave unmeasured (None): the rows lack the field they need.
NOT_MEASURED_COLUMNS = [
  "leakage_rate",
  *BRIDGE_COLUMNS,
  *EXEMPLAR_COLUMNS,
  *(c for c in NO_LEAK_COLUMNS if c != "n_no_leak"),  # n_no_leak: an Int64 column, <NA>
  *(c for c in COMMON_COLUMNS if c not in ("no_leak_common_k", "n_no_leak_common")),
]
INT_COLUMNS = ["n_no_leak", "no_leak_common_k", "n_no_leak_common"]  # Int64: <NA> where not measured


def _summarize_group(g_all: pd.DataFrame, n_boot: int, seed: int, last_step: int | None) -> dict[str, Any]:
  """One summary row from a group's prepared rows (`g_all`, with `base_correct`); numbers over the scored,
  one row per unit."""
  matched_to, listed = _matched_to(g_all), bool((~is_control(g_all)).any())
  g_all = one_row_per_unit(g_all)
  g = scored_rows(g_all)
  paired = g[g["base_correct"].notna()]
  pol = paired["correct"].to_numpy(dtype=float)
  base = paired["base_correct"].to_numpy(dtype=float)
  n_paired = int(pol.size)
  base_acc, gain, low, high = paired_gain(g, n_boot, seed)
  rel = 100.0 * gain / base_acc if base_acc > 0 else float("nan")
  tokens_t = float(g["teacher_tokens"].sum())
  tokens_all = tokens_t + float(g["student_tokens"].sum())
  recorded = g[g["text_recorded"]]
  return {
    "n": int(len(g)),
    "n_errors": int(sum(not absent(e) and str(e) != "" for e in g_all["error"])),  # stopped early: unscored
    "n_unscored": int(len(g_all) - len(g)),
    "n_problems": int(g["problem_id"].nunique()),
    "n_paired": n_paired,
    "accuracy": float(g["correct"].mean()) if len(g) else float("nan"),
    "paired_accuracy": float(pol.mean()) if n_paired else float("nan"),
    "baseline_accuracy": base_acc,
    "gain_points": 100.0 * gain,
    "gain_rel_pct": rel,
    "gain_ci_low": 100.0 * low,
    "gain_ci_high": 100.0 * high,
    **no_leak_columns(g, last_step, n_boot, seed),
    "teacher_fraction": tokens_t / tokens_all if tokens_all > 0 else 0.0,
    # teacher-written steps over step starts (what a trigger's matched random control reproduces)
    "realized_rate": realized_rate(g[["step_ids", "intervention_steps", "answer_step"]].to_dict("records")),
    "mean_student_tokens": float(g["student_tokens"].mean()),
    "mean_teacher_tokens": float(g["teacher_tokens"].mean()),
    "mean_switches": float(g["switches"].mean()),
    "rescue": int(((base == 0) & (pol == 1)).sum()),
    "harm": int(((base == 1) & (pol == 0)).sum()),
    # over the rows that record the teacher's text; None (not measured) when none does
    "leakage_rate": float(np.mean(leaked_rows(recorded))) if len(recorded) else None,
    **dict(zip(EXEMPLAR_COLUMNS, exemplar_rates(g) or (None, None))),
    "matched_to": matched_to,
    "listed": listed,  # the config lists this policy (a control may be listed too)
    **{c: _mean_recorded(g, f) for c, f in zip(BRIDGE_COLUMNS, ("teacher_read", "round_trips"))},
  }


def _mean_recorded(g: pd.DataFrame, field: str) -> float | None:
  """Mean of a field over the rows that record it; None (not measured) when none does."""
  known = [float(v) for v in g[field] if not absent(v)]
  return float(np.mean(known)) if known else None


def _matched_to(g: pd.DataFrame) -> str | None:
  """The trigger(s) a matched random control's rows name (';'-joined), None for any other policy."""
  names = sorted({str(v) for v in g["matched_to"] if not absent(v)})
  return ";".join(names) or None


def _matched_trigger_rates(out: pd.DataFrame) -> list[float]:
  """Per summary row: its trigger's realized rate when it is a matched control of one trigger, else NaN."""
  rate = {tuple(r[c] for c in GROUP_KEYS): r["realized_rate"] for r in out.to_dict("records")}
  keys = zip(*(out[c] for c in CONFIG_KEYS), out["matched_to"])
  return [
    float("nan") if absent(trigger) else rate.get((*config, trigger), float("nan"))
    for *config, trigger in keys
  ]


def summarize(df: pd.DataFrame, n_boot: int = 2000, seed: int = 0) -> pd.DataFrame:
  """One row per (task, student, teacher, checkpoint, policy); see the module docstring for units.

  Missing teacher/checkpoint labels come back as None; leakage_rate is missing when no row of the
  group records its teacher text (not measured, rather than "no leak"). Rows are sorted for reading:
  by task, student, teacher, checkpoint (natural order), then never, step:1..K, ..., always.

  A value not measured (None from `_summarize_group`: leakage, exemplar rates, no-leak columns) is
  NaN in the table, pandas' missing value, as an undefined one is: each column keeps one dtype, and
  summary.csv writes both as an empty cell; the counts in INT_COLUMNS are <NA> (Int64 columns).
  """
  if len(df) == 0:
    return pd.DataFrame(columns=SUMMARY_COLUMNS)
  d = attach_baseline(prepare(df))
  records = []
  for key, g in d.groupby(GROUP_KEYS, sort=False):
    rec = dict(zip(GROUP_KEYS, key))
    rec["step_k"] = intervention_step(rec["policy"])
    rec.update(_summarize_group(g, n_boot, seed, last_step=last_teacher_step(rec["policy"])))
    records.append(rec)
  common = common_no_leak_table(scored_rows(d), n_boot, seed).set_index(CONFIG_KEYS + ["step_k"])
  for rec in records:
    key = (*(rec[c] for c in CONFIG_KEYS), rec["step_k"])
    hit = common.loc[key] if rec["step_k"] is not None and key in common.index else None
    rec.update({c: None if hit is None else hit[c] for c in COMMON_COLUMNS})
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
  for col in INT_COLUMNS:  # <NA>: not measured
    out[col] = pd.to_numeric(out[col], errors="coerce").astype("Int64")
  for col in NOT_MEASURED_COLUMNS:  # None: not measured -> NaN
    out[col] = out[col].astype(float)
  out["matched_trigger_rate"] = _matched_trigger_rates(out)
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
  """Per task: rows, those without a correctness value (left out), problems, seeds, policies, models."""
  d = prepare(df)
  return (
    d.groupby("task")
    .agg(
      rows=("problem_id", "size"),
      unscored=("scored", lambda s: int((~s).sum())),
      problems=("problem_id", "nunique"),
      seeds=("seed", "nunique"),
      policies=("policy", "nunique"),
      students=("student", "nunique"),
      teachers=("teacher", lambda s: int(s[s != NO_LABEL].nunique())),
      checkpoints=("checkpoint", lambda s: int(s[s != NO_LABEL].nunique())),
    )
    .reset_index()
  )

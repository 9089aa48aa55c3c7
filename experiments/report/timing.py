"""When the teacher steps in: leakage-free gains, step 1 vs later steps, per-problem counterfactuals.

Leakage control: a step:K row is *leak-free* when the gold solution has more than K steps (`gold_steps`,
recorded per row by the sweep: the teacher's step K is not the final computation) AND its teacher text
does not state the gold answer (answer_checks.leak_free, the leakage rate's own rule). The no-leak
columns (`no_leak_columns` for the summary table, `*_no_leak` in `timing_differences`) repeat accuracy,
gain and step differences on leak-free rows only. Rows without `gold_steps` or teacher text (older
results files, datasets without worked solutions) are left out of them. Each K's leak-free rows are a
different problem set, so `common_no_leak` also gives the curve over K on one common set of units.

`counterfactuals` is the problems x K table of what the teacher writing step K did to each
(seed, problem) the student alone ran; `earliest_rescue_distribution` counts the student-alone
failures by the earliest step that rescues them.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from experiments.report.answer_checks import leak_free
from experiments.report.loading import CONFIG_KEYS, NO_LABEL, UNIT_KEYS, absent, prepare, scored_rows
from experiments.report.policies import intervention_step, natural_sort_key
from experiments.report.stats import attach_baseline, paired_difference, paired_gain

TIMING_COLUMNS = CONFIG_KEYS + [
  "step_k",
  "n_units",
  "diff_points",
  "diff_ci_low",
  "diff_ci_high",
  "n_units_no_leak",
  "diff_no_leak_points",
  "diff_no_leak_ci_low",
  "diff_no_leak_ci_high",
]
# The summary table's columns from `no_leak_columns`.
NO_LEAK_COLUMNS = [
  "n_no_leak",
  "accuracy_no_leak",
  "gain_no_leak_points",
  "gain_no_leak_ci_low",
  "gain_no_leak_ci_high",
]
# The summary table's columns from `common_no_leak`: one common set of units for every step:K.
COMMON_COLUMNS = [
  "no_leak_common_k",
  "n_no_leak_common",
  "accuracy_no_leak_common",
  "gain_no_leak_common_points",
  "gain_no_leak_common_ci_low",
  "gain_no_leak_common_ci_high",
]
# Cell values of the counterfactual table, per (seed, problem) and K, vs the student alone.
RESCUE, HARM, STAYED_RIGHT, STAYED_WRONG = "rescue", "harm", "right", "wrong"
NOT_RESCUED = "none"  # the earliest-rescue bucket of failures no swept step rescues


def _leak_measured(g: pd.DataFrame) -> bool:
  """Can leakage be judged on any row: gold step count known and teacher text recorded?"""
  return bool((g["gold_steps"].notna() & g["text_recorded"]).any())


def no_leak_columns(g: pd.DataFrame, last_step: int | None, n_boot: int, seed: int) -> dict[str, Any]:
  """Accuracy and paired gain on the group's leak-free rows paired with a never row (one row set for both).

  `g`: scored rows with `base_correct`. Leak-free (answer_checks.leak_free): the gold solution has
  more than `last_step` steps and the teacher text does not state the gold answer. None (not measured)
  when the policy has no fixed timing or no row records both its gold step count and its teacher text;
  rows lacking either are left out, never counted as leaking or not. NaN is an undefined statistic
  instead (no row is leak-free and paired).
  """
  if last_step is None or not _leak_measured(g):
    return dict.fromkeys(NO_LEAK_COLUMNS)
  sub = g[leak_free(g, last_step) & g["base_correct"].notna().to_numpy()]
  _, gain, low, high = paired_gain(sub, n_boot, seed)
  return {
    "n_no_leak": int(len(sub)),
    "accuracy_no_leak": float(sub["correct"].mean()) if len(sub) else float("nan"),
    "gain_no_leak_points": 100.0 * gain,
    "gain_no_leak_ci_low": 100.0 * low,
    "gain_no_leak_ci_high": 100.0 * high,
  }


def _paired_step_rows(d: pd.DataFrame) -> pd.DataFrame:
  """Scored step:K rows (`d`: scored rows with `base_correct`) paired with a never row, one per
  (config, K, seed, problem), with `step_k` and `leak_free` (at K)."""
  step_of = {p: intervention_step(p) for p in d["policy"].unique()}
  d = d.assign(step_k=d["policy"].map(step_of))
  d = d[d["step_k"].notna() & d["base_correct"].notna()].copy()
  d["step_k"] = d["step_k"].astype(int)
  d["leak_free"] = leak_free(d, d["step_k"])
  return d.drop_duplicates(CONFIG_KEYS + ["step_k"] + UNIT_KEYS)


def common_no_leak(df: pd.DataFrame, n_boot: int = 2000, seed: int = 0) -> pd.DataFrame:
  """`common_no_leak_table` from results rows (summary.csv carries the same numbers as columns)."""
  return common_no_leak_table(attach_baseline(scored_rows(prepare(df))), n_boot, seed)


def _step_rows(df: pd.DataFrame) -> pd.DataFrame:
  return _paired_step_rows(attach_baseline(scored_rows(prepare(df))))


def common_no_leak_table(d: pd.DataFrame, n_boot: int, seed: int) -> pd.DataFrame:
  """The no-leak curve over K on one common set of units, per config: CONFIG_KEYS, step_k, COMMON_COLUMNS.

  `d`: scored rows with `base_correct`. The set: the (seed, problem) units that ran every swept
  step:K and the student alone, whose gold solution has more steps than the largest K swept
  (`no_leak_common_k`) and none of whose step:K rows' teacher text states the gold answer. Every K is
  measured on exactly these units, so the points compare like with like (the per-K no-leak columns
  each use their own, larger set). Not measured (None) where leakage cannot be judged.
  """
  steps = _paired_step_rows(d)
  records = []
  for key, g in steps.groupby(CONFIG_KEYS, sort=False):
    ks = sorted(set(g["step_k"]))
    rec = dict(zip(CONFIG_KEYS, key))
    if not _leak_measured(g):
      records += [dict(rec, step_k=k, **dict.fromkeys(COMMON_COLUMNS)) for k in ks]
      continue
    ok = g.assign(ok=leak_free(g, max(ks))).groupby(UNIT_KEYS)["ok"].agg(["all", "size"])
    units = ok[ok["all"] & (ok["size"] == len(ks))].index.to_frame(index=False)
    for k in ks:
      sub = g[g["step_k"] == k].merge(units, on=UNIT_KEYS)
      _, gain, low, high = paired_gain(sub, n_boot, seed)
      cells = [max(ks), len(sub), float(sub["correct"].mean()) if len(sub) else float("nan")]
      cells += [100.0 * gain, 100.0 * low, 100.0 * high]
      records.append(dict(rec, step_k=k, **dict(zip(COMMON_COLUMNS, cells))))
  return pd.DataFrame.from_records(records, columns=CONFIG_KEYS + ["step_k"] + COMMON_COLUMNS)


def _config_labels(rec: dict[str, Any]) -> dict[str, Any]:
  """Missing teacher/checkpoint back to None, as in `summarize`."""
  return {k: (None if k in ("teacher", "checkpoint") and v == NO_LABEL else v) for k, v in rec.items()}


def timing_differences(df: pd.DataFrame, n_boot: int = 2000, seed: int = 0) -> pd.DataFrame:
  """gain(step:1) - gain(step:K) for every later K, per (task, student, teacher, checkpoint).

  Both gains are paired with the same never rows, so on the (seed, problem) units that have all three
  rows the difference of gains is the mean of (step:1 correct - step:K correct); its CI resamples
  problems. `*_no_leak` repeats it on the units where both rows are leak-free (gold solution longer
  than K, neither teacher text stating the gold answer). Positive: step 1 is the better timing.
  """
  d = _step_rows(df)
  records = []
  for key, g in d.groupby(CONFIG_KEYS, sort=False):
    first = g[g["step_k"] == 1].set_index(UNIT_KEYS)[["correct", "leak_free"]]
    if first.empty:
      continue
    first.columns = ["first", "first_leak_free"]
    for k in sorted(set(g["step_k"]) - {1}):
      later = g[g["step_k"] == k].set_index(UNIT_KEYS)[
        ["correct", "gold_steps", "text_recorded", "leak_free"]
      ]
      both = later.join(first, how="inner").reset_index()
      rec = dict(zip(CONFIG_KEYS, key), step_k=k)
      parts = [("", both)]
      if _leak_measured(both):  # else not measured: the no-leak columns stay missing
        parts.append(("_no_leak", both[both["leak_free"] & both["first_leak_free"]]))
      for suffix, units in parts:
        n, diff, low, high = paired_difference(
          units["first"].to_numpy(dtype=float),
          units["correct"].to_numpy(dtype=float),
          units["problem_id"],
          n_boot,
          seed,
        )
        rec.update(
          {
            f"n_units{suffix}": n,
            f"diff{suffix}_points": diff,
            f"diff{suffix}_ci_low": low,
            f"diff{suffix}_ci_high": high,
          }
        )
      records.append(_config_labels(rec))
  out = pd.DataFrame.from_records(records, columns=TIMING_COLUMNS)
  out["n_units_no_leak"] = pd.to_numeric(out["n_units_no_leak"], errors="coerce").astype("Int64")
  return out


def _outcome(base: bool, guided: bool) -> str:
  if base == guided:
    return STAYED_RIGHT if base else STAYED_WRONG
  return RESCUE if guided else HARM


def counterfactuals(df: pd.DataFrame) -> pd.DataFrame:
  """Problems x K: what the teacher writing step K did to each (seed, problem) the student alone ran.

  One row per (task, student, teacher, checkpoint, seed, problem_id) with a never row and at least
  one step:K row; columns `step_K` hold rescue (student alone wrong, guided right), harm (the
  reverse), right or wrong (unchanged), empty where K was not run. `earliest_rescue` is the smallest
  rescuing K (NaN: none), `n_rescue`/`n_harm` count the Ks.
  """
  d = _step_rows(df)
  index = CONFIG_KEYS + UNIT_KEYS
  if d.empty:
    return pd.DataFrame(
      columns=index + ["gold_steps", "base_correct", "n_rescue", "n_harm", "earliest_rescue"]
    )
  d["outcome"] = [_outcome(bool(b), bool(c)) for b, c in zip(d["base_correct"], d["correct"])]
  wide = d.pivot(index=index, columns="step_k", values="outcome")  # [units, K]
  ks = sorted(wide.columns)
  wide = wide[ks]
  wide.columns = [f"step_{k}" for k in ks]
  rescued = wide.eq(RESCUE).to_numpy()  # [units, K]
  wide["n_rescue"] = rescued.sum(axis=1)
  wide["n_harm"] = wide.eq(HARM).to_numpy().sum(axis=1)
  first_k = np.asarray(ks, dtype=float)[rescued.argmax(axis=1)]
  wide["earliest_rescue"] = np.where(rescued.any(axis=1), first_k, np.nan)
  unit = d.groupby(index)[["gold_steps", "base_correct"]].first()
  out = unit.join(wide, how="inner").reset_index()
  out["base_correct"] = out["base_correct"].astype(bool)
  keys = [_unit_sort_key(*unit) for unit in out[index].itertuples(index=False)]
  out = out.iloc[sorted(range(len(keys)), key=keys.__getitem__)].reset_index(drop=True)
  for col in ("teacher", "checkpoint"):
    out[col] = pd.Series([None if v == NO_LABEL else v for v in out[col]], dtype=object)
  for col in ("gold_steps", "earliest_rescue"):  # whole numbers; <NA>: unknown / no rescue
    out[col] = out[col].astype("Int64")
  return out


def _unit_sort_key(
  task: str, student: str, teacher: str, checkpoint: str, seed: int, problem_id: str
) -> tuple:
  """Reading order: task, student, teacher and checkpoint (natural), seed, problem id (natural)."""
  return (
    task,
    student,
    natural_sort_key(teacher),
    natural_sort_key(checkpoint),
    int(seed),
    natural_sort_key(problem_id),
  )


def earliest_rescue_distribution(cf: pd.DataFrame) -> pd.DataFrame:
  """Per config, the student-alone failures by the earliest swept step K that rescues them.

  Rows (config, earliest, count, share): `earliest` is "K" for every swept K (zero counts kept) and
  "none" for failures no swept step rescues; `share` is of `n_failed`, the (seed, problem) units the
  student alone got wrong.
  """
  columns = CONFIG_KEYS + ["earliest", "count", "n_failed", "share"]
  keyed = cf.assign(**{c: [NO_LABEL if absent(v) else v for v in cf[c]] for c in ("teacher", "checkpoint")})
  records = []
  for key, g in keyed.groupby(CONFIG_KEYS, sort=False):
    failed = g[~g["base_correct"].astype(bool)]
    n_failed = int(len(failed))
    swept = [int(c.removeprefix("step_")) for c in g.columns if c.startswith("step_") and g[c].notna().any()]
    counts = {str(k): int((failed["earliest_rescue"] == k).sum()) for k in swept}
    counts[NOT_RESCUED] = int(failed["earliest_rescue"].isna().sum())
    for earliest, count in counts.items():
      rec = dict(zip(CONFIG_KEYS, key), earliest=earliest, count=count, n_failed=n_failed)
      rec["share"] = count / n_failed if n_failed else float("nan")
      records.append(_config_labels(rec))
  return pd.DataFrame.from_records(records, columns=columns)

"""Paired statistics: the student-only baseline a row is paired with, and bootstrap CIs on it.

Every comparison is *paired*: a guided row is compared with the student-only ("never") row of the
same (task, student, teacher, checkpoint, seed, problem_id) (`attach_baseline`), so a gain, a
difference of two timings and their CIs all measure what the teacher's intervention changed on the
same problems with the same randomness. The CIs are percentile bootstraps (`paired_bootstrap_ci`);
gains and differences resample whole problems, so several seeds of one problem stay together.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import pandas as pd

from decode.core.policy import STUDENT_ONLY
from experiments.report.loading import CONFIG_KEYS, NO_LABEL, UNIT_KEYS


def attach_baseline(d: pd.DataFrame) -> pd.DataFrame:
  """Add `base_correct` (float, NaN when unpaired) from the matching scored "never" row.

  A never row without a correctness value (loading.scored_rows) pairs with nothing. The exact key is (task, student, teacher, checkpoint, seed, problem_id). The student-only
  run does not depend on the teacher, so a never row recorded without a teacher also serves
  as the baseline for every teacher's rows when no exact match exists.
  """
  never = d[(d["policy"] == STUDENT_ONLY) & d["scored"]]
  exact_keys = CONFIG_KEYS + UNIT_KEYS
  never = never.astype({"correct": float})
  exact = never.drop_duplicates(exact_keys)[exact_keys + ["correct"]].rename(
    columns={"correct": "base_correct"}
  )
  out = d.merge(exact, on=exact_keys, how="left", validate="many_to_one")
  loose_keys = ["task", "student", "checkpoint"] + UNIT_KEYS
  loose = (
    never[never["teacher"] == NO_LABEL]
    .drop_duplicates(loose_keys)[loose_keys + ["correct"]]
    .rename(columns={"correct": "base_loose"})
  )
  out = out.merge(loose, on=loose_keys, how="left", validate="many_to_one")
  base = out["base_correct"].astype("float64")
  out["base_correct"] = base.where(base.notna(), out["base_loose"].astype("float64"))
  return out.drop(columns="base_loose")


def paired_bootstrap_ci(
  policy_correct: Sequence[float] | np.ndarray,
  base_correct: Sequence[float] | np.ndarray,
  n_boot: int = 2000,
  seed: int = 0,
  *,
  groups: Sequence[Any] | np.ndarray | None = None,
  level: float = 0.95,
) -> tuple[float, float]:
  """Percentile CI of mean(policy - base), as a fraction, resampling pairs together.

  With `groups` (e.g. problem ids) whole groups are resampled, so several seeds of one
  problem stay together; without, every pair is its own unit. Deterministic for a seed.
  """
  pol = np.asarray(policy_correct, dtype=float)
  base = np.asarray(base_correct, dtype=float)
  if pol.shape != base.shape or pol.ndim != 1:
    raise ValueError(f"need two 1-d arrays of equal length, got {pol.shape} and {base.shape}")
  if pol.size == 0:
    return (float("nan"), float("nan"))
  diff = pol - base
  codes = np.arange(diff.size) if groups is None else pd.factorize(np.asarray(groups, dtype=object))[0]
  if len(codes) != diff.size:
    raise ValueError("groups must have one entry per pair")
  sums = np.bincount(codes, weights=diff)
  counts = np.bincount(codes).astype(float)
  n_groups = sums.size
  rng = np.random.default_rng(seed)
  stats = np.empty(n_boot)
  chunk = max(1, 2_000_000 // n_groups)  # bound the index matrix's memory
  for start in range(0, n_boot, chunk):
    idx = rng.integers(0, n_groups, size=(min(chunk, n_boot - start), n_groups))
    stats[start : start + idx.shape[0]] = sums[idx].sum(axis=1) / counts[idx].sum(axis=1)
  alpha = (1.0 - level) / 2.0
  low, high = np.quantile(stats, [alpha, 1.0 - alpha])
  return (float(low), float(high))


def paired_gain(g: pd.DataFrame, n_boot: int, seed: int) -> tuple[float, float, float, float]:
  """(baseline accuracy, gain, CI low, CI high) as fractions over the rows paired with a never row."""
  paired = g[g["base_correct"].notna()]
  if paired.empty:
    return (float("nan"),) * 4
  pol = paired["correct"].to_numpy(dtype=float)
  base = paired["base_correct"].to_numpy(dtype=float)
  low, high = paired_bootstrap_ci(pol, base, n_boot=n_boot, seed=seed, groups=paired["problem_id"])
  return float(base.mean()), float(pol.mean() - base.mean()), low, high


def unit_difference(a: pd.DataFrame, b: pd.DataFrame, n_boot: int, seed: int) -> tuple:
  """(n, mean difference, CI low, CI high) in points of a - b over the (seed, problem) units both ran.

  `a` and `b`: scored rows of one configuration, one per unit each (e.g. two timings, a trigger and
  its control). The CI resamples problems (`paired_difference`), never the two marginal accuracies.
  """
  both = a[UNIT_KEYS + ["correct"]].merge(b[UNIT_KEYS + ["correct"]], on=UNIT_KEYS, suffixes=("_a", "_b"))
  return paired_difference(
    both["correct_a"].to_numpy(dtype=float),
    both["correct_b"].to_numpy(dtype=float),
    both["problem_id"].to_numpy(),
    n_boot,
    seed,
  )


def paired_difference(first: np.ndarray, later: np.ndarray, groups: Any, n_boot: int, seed: int) -> tuple:
  """(n, mean difference, CI low, CI high) in points of first - later, resampling problems."""
  if first.size == 0:
    return (0, float("nan"), float("nan"), float("nan"))
  low, high = paired_bootstrap_ci(first, later, n_boot=n_boot, seed=seed, groups=groups)
  return (int(first.size), 100.0 * float(np.mean(first - later)), 100.0 * low, 100.0 * high)

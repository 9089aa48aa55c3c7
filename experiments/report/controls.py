"""Matched-rate controls: each trigger policy against `random:P` at its realized rate P.

A trigger that helps only because it hands the teacher a fraction of the steps is matched by a
random policy with that fraction; the difference, paired over (seed, problem), is what the
trigger's choice of *when* adds. Rows of a control name their trigger in `matched_to`. Both realized
rates are measured on the units compared (scored rows only, loading.scored_rows): a control whose
rate strays more than RATE_TOLERANCE from its trigger's does not match it, and the report says so.
"""

from __future__ import annotations

import pandas as pd

from experiments.report.loading import UNIT_KEYS, scored_rows
from experiments.report.outputs import CONFIG_COLUMNS
from experiments.report.stats import paired_difference
from experiments.sweep.calibration import realized_rate

CONTROL_COLUMNS = CONFIG_COLUMNS + [
  "trigger",
  "control",
  "trigger_rate",
  "control_rate",
  "n",
  "trigger_accuracy",
  "control_accuracy",
  "diff_points",
  "diff_ci_low",
  "diff_ci_high",
]
# A control matches its trigger when their realized rates differ by at most this (a fraction).
RATE_TOLERANCE = 0.05


def _rate(pairs: pd.DataFrame, suffix: str) -> float:
  cols = {
    f"{c}{suffix}": c for c in ("step_ids", "intervention_steps", "answer_step")
  }  # realized_rate's fields
  return realized_rate(pairs[list(cols)].rename(columns=cols).to_dict("records"))


def matched_controls(df: pd.DataFrame, n_boot: int = 2000, seed: int = 0) -> pd.DataFrame:
  """One row per (config, trigger) with a matched control: accuracies, rates and trigger - control.

  `df`: prepared rows (loading.prepare); rows without a correctness value are left out.
  """
  df = scored_rows(df)
  out = []
  controls = df[df["matched_to"].notna()]
  for keys, ctrl in controls.groupby(CONFIG_COLUMNS + ["matched_to", "policy"], dropna=False, sort=True):
    *config, trigger, control = keys
    mask = (df["policy"] == trigger).copy()
    for col, value in zip(CONFIG_COLUMNS, config):
      mask &= df[col] == value
    trig = df[mask]
    pairs = trig.merge(ctrl, on=UNIT_KEYS, suffixes=("_t", "_c"))
    if pairs.empty:
      continue
    n, diff, low, high = paired_difference(
      pairs["correct_t"].to_numpy(float),
      pairs["correct_c"].to_numpy(float),
      pairs["problem_id"].to_numpy(),
      n_boot,
      seed,
    )
    out.append(
      dict(
        zip(CONFIG_COLUMNS, config),
        trigger=trigger,
        control=control,
        trigger_rate=_rate(pairs, "_t"),  # over the compared units, as the accuracies
        control_rate=_rate(pairs, "_c"),
        n=n,
        trigger_accuracy=float(pairs["correct_t"].astype(float).mean()),
        control_accuracy=float(pairs["correct_c"].astype(float).mean()),
        diff_points=diff,
        diff_ci_low=low,
        diff_ci_high=high,
      )
    )
  return pd.DataFrame(out, columns=CONTROL_COLUMNS)

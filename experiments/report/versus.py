"""Every guided policy against one reference policy, paired over (seed, problem): the verdict behind
a findings sentence such as "it beats the teacher writing everything", which two accuracies' point
estimates (or their marginal CIs) cannot give."""

from __future__ import annotations

import pandas as pd

from decode.core.policy import STUDENT_ONLY, TEACHER_ONLY
from experiments.report.loading import CONFIG_KEYS, NO_LABEL, one_row_per_unit, prepare, scored_rows
from experiments.report.stats import unit_difference

VERSUS_COLUMNS = CONFIG_KEYS + ["policy", "reference", "n", "diff_points", "diff_ci_low", "diff_ci_high"]


def versus_reference(
  df: pd.DataFrame, reference: str = TEACHER_ONLY, n_boot: int = 2000, seed: int = 0
) -> pd.DataFrame:
  """policy - reference in accuracy points on the scored units both ran, per config and guided policy
  (CI resampling problems); configs without reference rows are left out. Labels as in `summarize`."""
  d = scored_rows(one_row_per_unit(prepare(df)))  # a control that is also listed: counted once
  records = []
  for key, g in d.groupby(CONFIG_KEYS, sort=False):
    ref = g[g["policy"] == reference]
    if ref.empty:
      continue
    guided = g[~g["policy"].isin([reference, STUDENT_ONLY])]
    for policy, rows in guided.groupby("policy", sort=False):
      n, diff, low, high = unit_difference(rows, ref, n_boot, seed)
      rec = dict(zip(CONFIG_KEYS, key), policy=policy, reference=reference, n=n)
      rec.update(diff_points=diff, diff_ci_low=low, diff_ci_high=high)
      records.append(
        {k: (None if k in ("teacher", "checkpoint") and v == NO_LABEL else v) for k, v in rec.items()}
      )
  return pd.DataFrame.from_records(records, columns=VERSUS_COLUMNS)

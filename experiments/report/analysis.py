"""Turn per-row sweep results into the paper's numbers: the one import for the analysis's callers.

Every comparison is *paired*: a guided row is compared with the student-only ("never") row of the
same (task, student, teacher, checkpoint, seed, problem_id), so the gain, the rescue/harm counts and
the bootstrap CI all measure what the teacher's intervention changed on the same problems with the
same randomness. Leakage is controlled by timing: the `*_no_leak` columns keep the problems whose gold
solution has more steps than the teacher writes.

This module only gathers the public names (`analysis.summarize`, `analysis.SUMMARY_COLUMNS`, ...) so
callers need one import; each job lives in its own module:

  loading        results*.jsonl -> one table; the row schema (keys, required columns, defaults) and `prepare`
  policies       a policy's step K and last teacher step; the reading order of policies and labels
  stats          pairing with the never row; the paired bootstrap CI, gains and differences built on it
  summary        the summary table (summary.csv, units in its docstring), checkpoints, dataset sizes
  timing         no-leak columns, step 1 vs step K differences, per-problem counterfactuals, earliest rescue
  answer_checks  the gold answer in the teacher's text (leakage), predictions copying exemplar answers
"""

from __future__ import annotations

from experiments.report.answer_checks import answer_leaked, exemplar_rates
from experiments.report.loading import (
  CONFIG_KEYS,
  GROUP_KEYS,
  OPTIONAL_DEFAULTS,
  REQUIRED_COLUMNS,
  RESULTS_GLOB,
  UNIT_KEYS,
  load_results,
  prepare,
  read_jsonl_rows,
)
from experiments.report.policies import (
  intervention_step,
  last_teacher_step,
  natural_sort_key,
  policy_sort_key,
)
from experiments.report.stats import attach_baseline, paired_bootstrap_ci
from experiments.report.summary import SUMMARY_COLUMNS, checkpoints_of, dataset_sizes, summarize
from experiments.report.timing import (
  HARM,
  NOT_RESCUED,
  RESCUE,
  STAYED_RIGHT,
  STAYED_WRONG,
  TIMING_COLUMNS,
  counterfactuals,
  earliest_rescue_distribution,
  timing_differences,
)

__all__ = [
  "CONFIG_KEYS",
  "GROUP_KEYS",
  "HARM",
  "NOT_RESCUED",
  "OPTIONAL_DEFAULTS",
  "REQUIRED_COLUMNS",
  "RESCUE",
  "RESULTS_GLOB",
  "STAYED_RIGHT",
  "STAYED_WRONG",
  "SUMMARY_COLUMNS",
  "TIMING_COLUMNS",
  "UNIT_KEYS",
  "answer_leaked",
  "attach_baseline",
  "checkpoints_of",
  "counterfactuals",
  "dataset_sizes",
  "earliest_rescue_distribution",
  "exemplar_rates",
  "intervention_step",
  "last_teacher_step",
  "load_results",
  "natural_sort_key",
  "paired_bootstrap_ci",
  "policy_sort_key",
  "prepare",
  "read_jsonl_rows",
  "summarize",
  "timing_differences",
]

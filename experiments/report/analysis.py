"""Turn per-row sweep results into the paper's numbers: the one import for the analysis's callers.

Every comparison is *paired*: a guided row is compared with the student-only ("never") row of the
same (task, student, teacher, checkpoint, seed, problem_id), so the gain, the rescue/harm counts and
the bootstrap CI all measure what the teacher's intervention changed on the same problems with the
same randomness. Leakage is controlled on every row: the `*_no_leak` columns keep the rows whose gold
solution has more steps than the teacher writes and whose teacher text does not state the gold answer
(`leak_free`). Rows without a correctness value are left out of every number and counted (`scored_rows`).

This module only gathers the public names (`analysis.summarize`, `analysis.SUMMARY_COLUMNS`, ...) so
callers need one import; each job lives in its own module:

  loading        results*.jsonl -> one table; the row schema (keys, required columns, defaults), `prepare`, `scored_rows`
  policies       a policy's step K and last teacher step; the reading order of policies and labels
  stats          pairing with the never row; the paired bootstrap CI, gains and differences built on it
  summary        the summary table (summary.csv, units in its docstring), checkpoints, dataset sizes
  timing         no-leak columns and the common-set curve, step 1 vs step K differences, counterfactuals,
                 earliest rescue
  versus         every guided policy against `always`, paired (the findings' verdict)
  answer_checks  the gold answer in the teacher's text (leakage, leak-free rows), predictions copying
                 exemplar answers
"""

from __future__ import annotations

from experiments.report.answer_checks import answer_leaked, exemplar_rates, leak_free, leaked_rows
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
  scored_rows,
)
from experiments.report.policies import (
  intervention_step,
  last_teacher_step,
  natural_sort_key,
  policy_sort_key,
)
from experiments.report.stats import attach_baseline, paired_bootstrap_ci, unit_difference
from experiments.report.summary import SUMMARY_COLUMNS, checkpoints_of, dataset_sizes, summarize
from experiments.report.timing import (
  HARM,
  NOT_RESCUED,
  RESCUE,
  STAYED_RIGHT,
  STAYED_WRONG,
  TIMING_COLUMNS,
  common_no_leak,
  counterfactuals,
  earliest_rescue_distribution,
  timing_differences,
)
from experiments.report.versus import versus_reference

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
  "common_no_leak",
  "counterfactuals",
  "dataset_sizes",
  "earliest_rescue_distribution",
  "exemplar_rates",
  "intervention_step",
  "leak_free",
  "leaked_rows",
  "last_teacher_step",
  "load_results",
  "natural_sort_key",
  "paired_bootstrap_ci",
  "policy_sort_key",
  "prepare",
  "read_jsonl_rows",
  "scored_rows",
  "summarize",
  "timing_differences",
  "unit_difference",
  "versus_reference",
]

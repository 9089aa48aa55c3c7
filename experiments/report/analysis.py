"""Turn per-row sweep results into the paper's numbers.

Every comparison is *paired*: a guided row is compared with the student-only ("never") row
of the same (task, student, teacher, checkpoint, seed, problem_id), so the gain, the
rescue/harm counts and the bootstrap CI all measure what the teacher's intervention changed
on the same problems with the same randomness.

Leakage control by timing: the teacher's step K cannot be the final computation on a problem whose
gold solution has more than K steps (`gold_steps`, recorded per row by the sweep), so the `*_no_leak`
columns repeat accuracy and gain on those problems only. Rows without `gold_steps` (older results
files, datasets without worked solutions) are left out of them.

Units: `accuracy`, `baseline_accuracy`, `teacher_fraction`, `leakage_rate` and the exemplar rates
are fractions in [0, 1]; `gain_points`, `gain_no_leak_points` and their CI bounds are percentage
points; `gain_rel_pct` is the relative gain in percent of the baseline accuracy.
"""

from __future__ import annotations

import json
import math
import re
import warnings
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import pandas as pd

from decode.policy import (
  NO_LIMIT,
  TRIGGER_ENTROPY,
  TRIGGER_MARGIN,
  TRIGGER_MAXPROB,
  TRIGGER_NONE,
  TRIGGER_RANDOM,
  Policy,
  PolicyError,
  parse_policy,
)
from experiments.sweep.store import CorruptResultsError
from experiments.tasks.answers import answers_match, normalize_number, numbers_in
from model.errors import UserError

RESULTS_GLOB = "results*.jsonl"
CONFIG_KEYS = ["task", "student", "teacher", "checkpoint"]
GROUP_KEYS = CONFIG_KEYS + ["policy"]
UNIT_KEYS = ["seed", "problem_id"]
REQUIRED_COLUMNS = ["task", "student", "policy", "problem_id", "answer", "correct"]
# Columns a row may omit; the value is what "omitted" means.
OPTIONAL_DEFAULTS: dict[str, Any] = {
  "teacher": None,
  "checkpoint": None,
  "seed": 0,
  "student_tokens": 0,
  "teacher_tokens": 0,
  "teacher_prefilled": 0,
  "switches": 0,
  "teacher_text": "",
  "prediction": None,
  "gold_steps": None,  # steps of the gold solution; None = unknown (excluded from no-leak columns)
  "exemplar_answers": None,  # final answers of the prompt's exemplars; None = not recorded
  "error": None,  # why a row stopped early (non-finite logits); None = it did not
}
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
  "mean_student_tokens",
  "mean_teacher_tokens",
  "mean_switches",
  "rescue",
  "harm",
  "leakage_rate",
  "exemplar_copy_rate",
  "gold_exemplar_rate",
]
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
# Cell values of the counterfactual table, per (seed, problem) and K, vs the student alone.
RESCUE, HARM, STAYED_RIGHT, STAYED_WRONG = "rescue", "harm", "right", "wrong"
NOT_RESCUED = "none"  # the earliest-rescue bucket of failures no swept step rescues
_NONE = ""  # internal stand-in for a missing teacher/checkpoint label (None never matches in joins)


# --------------------------------------------------------------------------- loading


def _results_files(output_dir: Path) -> list[Path]:
  """results.jsonl first, then results-1, results-2, ... in numeric order (first wins on dups)."""

  def order(path: Path) -> tuple[int, int, str]:
    m = re.fullmatch(r"results(?:-(\d+))?\.jsonl", path.name)
    if m is None:
      return (1, 0, path.name)
    return (0, int(m.group(1) or -1), path.name)

  return sorted((p for p in output_dir.glob(RESULTS_GLOB) if p.is_file()), key=order)


def read_jsonl_rows(path: str | Path) -> list[dict[str, Any]]:
  """Rows of one results file.

  A killed writer can leave its last line half-written: an unparseable final line WITHOUT a
  trailing newline is skipped with a warning. Anything else unparseable is corruption and
  raises CorruptResultsError (a UserError, so a ValueError) naming the file and the 1-based line.
  """
  path = Path(path)
  data = path.read_bytes()
  lines = data.split(b"\n")
  complete = data.endswith(b"\n") or not data
  if complete:
    lines = lines[:-1]  # the empty piece after the final newline
  rows: list[dict[str, Any]] = []
  for i, raw in enumerate(lines):
    is_partial_tail = (not complete) and i == len(lines) - 1
    if not raw.strip():
      continue
    try:
      row = json.loads(raw.decode("utf-8"))
      if not isinstance(row, dict):
        raise ValueError(f"expected a JSON object, got {type(row).__name__}")
    except (ValueError, UnicodeDecodeError) as err:
      if is_partial_tail:
        warnings.warn(f"{path}: skipping truncated final line {i + 1} (no trailing newline)")
        continue
      raise CorruptResultsError(
        f"{path}: corrupt line {i + 1}: {err}; move the file aside, or fix or delete that line"
      ) from err
    rows.append(row)
  return rows


def load_results(output_dir: str | Path) -> pd.DataFrame:
  """Merge every results*.jsonl in `output_dir`; duplicate row_ids keep their first occurrence."""
  output_dir = Path(output_dir)
  files = _results_files(output_dir)
  if not files:
    raise FileNotFoundError(f"no {RESULTS_GLOB} files in {output_dir}")
  rows = [row for path in files for row in read_jsonl_rows(path)]
  df = pd.DataFrame(rows)
  if "row_id" in df.columns and len(df):
    df = df.drop_duplicates(subset="row_id", keep="first").reset_index(drop=True)
  return df


# --------------------------------------------------------------------------- policies


def _policy(policy: str) -> Policy:
  """`decode.policy.parse_policy`, the one policy grammar; an error names the policy in the results."""
  try:
    return parse_policy(policy)
  except PolicyError as err:
    raise PolicyError(f"malformed policy {policy!r} in the results: {err}") from err


def intervention_step(policy: str) -> int | None:
  """K of a "teacher writes all of step K, once" policy ('step:K', 'step:K,n=1'), else None.

  Only those are points on the paper's step curve: several steps (n > 1), part of a step
  (hint:K, step:K,m=M), triggers, never and always give None. A policy that parse_policy
  rejects raises PolicyError (a ValueError) naming it.
  """
  p = _policy(policy)
  whole_single_step = (
    p.trigger == TRIGGER_NONE
    and p.step_lo >= 1
    and p.step_hi == p.step_lo + 1
    and p.token_limit == int(NO_LIMIT)
  )
  return p.step_lo if whole_single_step else None


def last_teacher_step(policy: str) -> int | None:
  """The last step a fixed-timing policy lets the teacher write: K for step:K and hint:K, K+N-1
  for step:K,n=N; None for never, always and triggers (no fixed last step).

  A problem is leak-free for the policy when its gold solution has more steps than this.
  """
  p = _policy(policy)
  fixed = p.trigger == TRIGGER_NONE and p.step_lo >= 1 and p.step_lo < p.step_hi < int(NO_LIMIT)
  return p.step_hi - 1 if fixed else None


# Reading order of policy families; within a family, by the policy's numbers.
_RANK_NEVER, _RANK_STEP, _RANK_HINT, _RANK_ALWAYS = 0, 1, 2, 9
_TRIGGER_RANK = {TRIGGER_ENTROPY: 3, TRIGGER_MAXPROB: 4, TRIGGER_MARGIN: 5, TRIGGER_RANDOM: 6}


def _limit(value: int) -> float:
  return math.inf if value >= int(NO_LIMIT) else float(value)


def policy_sort_key(policy: str) -> tuple:
  """Reading order for tables: never, step:1..K (and step:K,n=N), hints, triggers, always last.

  Within a family by the parsed numbers (step, number of steps, token limit; triggers by threshold,
  budget, token limit), no limit counting as infinite. Raises like `intervention_step`.
  """
  p = _policy(policy)
  if p.trigger != TRIGGER_NONE:
    return (_TRIGGER_RANK[p.trigger], (p.threshold, _limit(p.budget), _limit(p.token_limit)), p.spec, policy)
  if not p.needs_teacher:
    return (_RANK_NEVER, (), p.spec, policy)
  if p.step_hi >= int(NO_LIMIT):
    return (_RANK_ALWAYS, (), p.spec, policy)
  rank = _RANK_STEP if p.token_limit >= int(NO_LIMIT) else _RANK_HINT
  return (rank, (p.step_lo, p.step_hi - p.step_lo, _limit(p.token_limit)), p.spec, policy)


def natural_sort_key(label: Any) -> tuple:
  """'step_2000' < 'step_10000'; missing labels first."""
  if label is None or (isinstance(label, float) and np.isnan(label)) or label == _NONE:
    return (0,)
  parts = re.split(r"(\d+)", str(label))
  return (1, tuple((0, int(p)) if p.isdigit() else (1, p) for p in parts))


# --------------------------------------------------------------------------- leakage


def answer_leaked(teacher_text: str | None, answer: str | None) -> bool:
  """Does the teacher's text contain the gold answer as a number that scoring would accept?

  The numbers in the text are read with the scoring grammar (`answers.numbers_in`) and compared
  with the scoring rule (`answers.answers_match`), so a number counts exactly when an answer
  written that way would be scored correct: "$1,000" holds 1000, "3/4" holds 0.75 (not 3 or 4),
  "\u22125" holds -5. Numbers are whole: "124" does not contain 24. A gold answer that is not a
  number falls back to a whole-token text match.
  """
  if not teacher_text or answer is None or str(answer).strip() == "":
    return False
  gold = str(answer).strip()
  if normalize_number(gold) is None:
    return re.search(rf"(?<![\w.]){re.escape(gold)}(?![\w])", teacher_text) is not None
  return any(answers_match(number, gold) for number in numbers_in(teacher_text))


# --------------------------------------------------------------------------- bootstrap


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


# --------------------------------------------------------------------------- summary


def prepare(df: pd.DataFrame) -> pd.DataFrame:
  """Copy with defaults filled and types fixed; missing teacher/checkpoint become '' for joins."""
  missing = [c for c in REQUIRED_COLUMNS if c not in df.columns]
  if missing:
    raise UserError(
      f"results are missing required columns {missing}; were they written by experiments.sweep? "
      "(rows need task, student, policy, problem_id, answer and correct)"
    )
  d = df.copy()
  for col, default in OPTIONAL_DEFAULTS.items():
    if col not in d.columns:
      d[col] = default
  for col in ("teacher", "checkpoint"):
    d[col] = [_NONE if v is None or (isinstance(v, float) and np.isnan(v)) else str(v) for v in d[col]]
  for col in ("task", "student", "policy", "problem_id", "answer"):
    d[col] = d[col].astype(str)
  d["seed"] = d["seed"].fillna(0).astype(int)
  for col in ("student_tokens", "teacher_tokens", "teacher_prefilled", "switches"):
    d[col] = pd.to_numeric(d[col]).fillna(0)
  d["teacher_text"] = d["teacher_text"].fillna("").astype(str)
  d["correct"] = d["correct"].astype(bool)
  d["gold_steps"] = pd.to_numeric(d["gold_steps"], errors="coerce").astype(float)  # NaN: unknown
  d["prediction"] = [None if _absent(v) else str(v) for v in d["prediction"]]
  d["exemplar_answers"] = [
    tuple(str(a) for a in v) if isinstance(v, (list, tuple, np.ndarray)) else ()
    for v in d["exemplar_answers"]
  ]
  return d


def _absent(value: Any) -> bool:
  """None or a float NaN (what pandas puts in a column a row did not have)."""
  return value is None or (isinstance(value, float) and math.isnan(value))


def attach_baseline(d: pd.DataFrame) -> pd.DataFrame:
  """Add `base_correct` (float, NaN when unpaired) from the matching "never" row.

  The exact key is (task, student, teacher, checkpoint, seed, problem_id). The student-only
  run does not depend on the teacher, so a never row recorded without a teacher also serves
  as the baseline for every teacher's rows when no exact match exists.
  """
  never = d[d["policy"] == "never"]
  exact_keys = CONFIG_KEYS + UNIT_KEYS
  exact = never.drop_duplicates(exact_keys)[exact_keys + ["correct"]].rename(
    columns={"correct": "base_correct"}
  )
  out = d.merge(exact, on=exact_keys, how="left", validate="many_to_one")
  loose_keys = ["task", "student", "checkpoint"] + UNIT_KEYS
  loose = (
    never[never["teacher"] == _NONE]
    .drop_duplicates(loose_keys)[loose_keys + ["correct"]]
    .rename(columns={"correct": "base_loose"})
  )
  out = out.merge(loose, on=loose_keys, how="left", validate="many_to_one")
  base = out["base_correct"].astype("float64")
  out["base_correct"] = base.where(base.notna(), out["base_loose"].astype("float64"))
  return out.drop(columns="base_loose")


def _paired_gain(g: pd.DataFrame, n_boot: int, seed: int) -> tuple[float, float, float, float]:
  """(baseline accuracy, gain, CI low, CI high) as fractions over the rows paired with a never row."""
  paired = g[g["base_correct"].notna()]
  if paired.empty:
    return (float("nan"),) * 4
  pol = paired["correct"].to_numpy(dtype=float)
  base = paired["base_correct"].to_numpy(dtype=float)
  low, high = paired_bootstrap_ci(pol, base, n_boot=n_boot, seed=seed, groups=paired["problem_id"])
  return float(base.mean()), float(pol.mean() - base.mean()), low, high


def _no_leak_columns(g: pd.DataFrame, last_step: int | None, n_boot: int, seed: int) -> dict[str, Any]:
  """Accuracy and paired gain on the problems whose gold solution has more than `last_step` steps.

  Missing (None/NaN) when the policy has no fixed timing or no row of the group knows its gold
  step count; rows without one are left out, never counted as leaking or not.
  """
  known = g[g["gold_steps"].notna()]
  if last_step is None or known.empty:
    return {
      "n_no_leak": None,
      "accuracy_no_leak": float("nan"),
      "gain_no_leak_points": float("nan"),
      "gain_no_leak_ci_low": float("nan"),
      "gain_no_leak_ci_high": float("nan"),
    }
  sub = known[known["gold_steps"] > last_step]
  _, gain, low, high = _paired_gain(sub, n_boot, seed)
  return {
    "n_no_leak": int(len(sub)),
    "accuracy_no_leak": float(sub["correct"].mean()) if len(sub) else float("nan"),
    "gain_no_leak_points": 100.0 * gain,
    "gain_no_leak_ci_low": 100.0 * low,
    "gain_no_leak_ci_high": 100.0 * high,
  }


def _matches_any(value: Any, answers: Sequence[str]) -> bool:
  return any(answers_match(value, a) for a in answers)


def exemplar_rates(g: pd.DataFrame) -> tuple[float, float]:
  """(prediction copy rate, gold coincidence rate) over rows whose prompt had exemplars.

  Copy rate: the prediction equals one of the prompt's exemplar answers (the scoring rule). The gold
  rate is how often the gold answer itself equals one, the level copying has to be judged against.
  NaN when no row records exemplar answers (zero-shot prompts, older results files).
  """
  shots = [(p, a, ex) for p, a, ex in zip(g["prediction"], g["answer"], g["exemplar_answers"]) if ex]
  if not shots:
    return (float("nan"), float("nan"))
  copied = [_matches_any(p, ex) for p, _, ex in shots]
  gold = [_matches_any(a, ex) for _, a, ex in shots]
  return (float(np.mean(copied)), float(np.mean(gold)))


def _summarize_group(
  g: pd.DataFrame, n_boot: int, seed: int, has_text: bool, last_step: int | None
) -> dict[str, Any]:
  correct = g["correct"].to_numpy(dtype=float)
  paired = g[g["base_correct"].notna()]
  pol = paired["correct"].to_numpy(dtype=float)
  base = paired["base_correct"].to_numpy(dtype=float)
  n_paired = int(pol.size)
  base_acc, gain, low, high = _paired_gain(g, n_boot, seed)
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
    **_no_leak_columns(g, last_step, n_boot, seed),
    "teacher_fraction": tokens_t / tokens_all if tokens_all > 0 else 0.0,
    "mean_student_tokens": float(g["student_tokens"].mean()),
    "mean_teacher_tokens": float(g["teacher_tokens"].mean()),
    "mean_switches": float(g["switches"].mean()),
    "rescue": int(((base == 0) & (pol == 1)).sum()),
    "harm": int(((base == 1) & (pol == 0)).sum()),
    "leakage_rate": float(np.mean(leaks)) if has_text else float("nan"),
    **dict(zip(["exemplar_copy_rate", "gold_exemplar_rate"], exemplar_rates(g))),
  }


def summarize(df: pd.DataFrame, n_boot: int = 2000, seed: int = 0) -> pd.DataFrame:
  """One row per (task, student, teacher, checkpoint, policy); see the module docstring for units.

  Missing teacher/checkpoint labels come back as None; leakage_rate is NaN when the rows
  carry no teacher_text column (not measured, rather than "no leak"). Rows are sorted for reading:
  by task, student, teacher, checkpoint (natural order), then never, step:1..K, ..., always.
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
  for col in ("teacher", "checkpoint"):
    out[col] = pd.Series([None if v == _NONE else v for v in out[col]], dtype=object)
  return out


def checkpoints_of(df: pd.DataFrame) -> list[str]:
  """Distinct non-missing checkpoint labels, in natural order."""
  if "checkpoint" not in df.columns:
    return []
  labels = {
    str(v)
    for v in df["checkpoint"]
    if v is not None and not (isinstance(v, float) and np.isnan(v)) and v != _NONE
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
      teachers=("teacher", lambda s: int(s[s != _NONE].nunique())),
      checkpoints=("checkpoint", lambda s: int(s[s != _NONE].nunique())),
    )
    .reset_index()
  )


# --------------------------------------------------------------------------- timing and counterfactuals


def _step_rows(df: pd.DataFrame) -> pd.DataFrame:
  """Prepared step:K rows paired with a never row, one per (config, K, seed, problem), with `step_k`."""
  d = attach_baseline(prepare(df))
  step_of = {p: intervention_step(p) for p in d["policy"].unique()}
  d["step_k"] = d["policy"].map(step_of)
  d = d[d["step_k"].notna() & d["base_correct"].notna()].copy()
  d["step_k"] = d["step_k"].astype(int)
  return d.drop_duplicates(CONFIG_KEYS + ["step_k"] + UNIT_KEYS)


def _config_labels(rec: dict[str, Any]) -> dict[str, Any]:
  """Missing teacher/checkpoint back to None, as in `summarize`."""
  return {k: (None if k in ("teacher", "checkpoint") and v == _NONE else v) for k, v in rec.items()}


def _difference(first: np.ndarray, later: np.ndarray, groups: Any, n_boot: int, seed: int) -> tuple:
  """(n, mean difference, CI low, CI high) in points of first - later, resampling problems."""
  if first.size == 0:
    return (0, float("nan"), float("nan"), float("nan"))
  low, high = paired_bootstrap_ci(first, later, n_boot=n_boot, seed=seed, groups=groups)
  return (int(first.size), 100.0 * float(np.mean(first - later)), 100.0 * low, 100.0 * high)


def timing_differences(df: pd.DataFrame, n_boot: int = 2000, seed: int = 0) -> pd.DataFrame:
  """gain(step:1) - gain(step:K) for every later K, per (task, student, teacher, checkpoint).

  Both gains are paired with the same never rows, so on the (seed, problem) units that have all three
  rows the difference of gains is the mean of (step:1 correct - step:K correct); its CI resamples
  problems. `*_no_leak` repeats it on problems whose gold solution has more than K steps, where
  neither timing can hand over the final computation. Positive: step 1 is the better timing.
  """
  d = _step_rows(df)
  records = []
  for key, g in d.groupby(CONFIG_KEYS, sort=False):
    first = g[g["step_k"] == 1].set_index(UNIT_KEYS)["correct"]
    if first.empty:
      continue
    for k in sorted(set(g["step_k"]) - {1}):
      later = g[g["step_k"] == k].set_index(UNIT_KEYS)[["correct", "gold_steps"]]
      both = later.join(first.rename("first"), how="inner").reset_index()
      rec = dict(zip(CONFIG_KEYS, key), step_k=k)
      parts = [("", both)]
      if both["gold_steps"].notna().any():  # else not measured: the no-leak columns stay missing
        parts.append(("_no_leak", both[both["gold_steps"] > k]))
      for suffix, units in parts:
        n, diff, low, high = _difference(
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
    out[col] = pd.Series([None if v == _NONE else v for v in out[col]], dtype=object)
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
  keyed = cf.assign(**{c: [_NONE if _absent(v) else v for v in cf[c]] for c in ("teacher", "checkpoint")})
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

"""Turn per-row sweep results into the paper's numbers.

Every comparison is *paired*: a guided row is compared with the student-only ("never") row
of the same (task, student, teacher, checkpoint, seed, problem_id), so the gain, the
rescue/harm counts and the bootstrap CI all measure what the teacher's intervention changed
on the same problems with the same randomness.

Units: `accuracy`, `baseline_accuracy`, `teacher_fraction` and `leakage_rate` are fractions
in [0, 1]; `gain_points` and its CI bounds are percentage points; `gain_rel_pct` is the
relative gain in percent of the baseline accuracy.
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
from experiments.tasks.answers import answers_match, normalize_number, numbers_in

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
}
SUMMARY_COLUMNS = [
  "task",
  "student",
  "teacher",
  "checkpoint",
  "policy",
  "step_k",
  "n",
  "n_problems",
  "n_paired",
  "accuracy",
  "baseline_accuracy",
  "gain_points",
  "gain_rel_pct",
  "gain_ci_low",
  "gain_ci_high",
  "teacher_fraction",
  "mean_student_tokens",
  "mean_teacher_tokens",
  "mean_switches",
  "rescue",
  "harm",
  "leakage_rate",
]
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
  raises ValueError naming the file and the 1-based line number.
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
      raise ValueError(f"{path}: corrupt line {i + 1}: {err}") from err
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
    raise KeyError(f"results are missing required columns: {missing}")
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
  return d


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


def _summarize_group(g: pd.DataFrame, n_boot: int, seed: int, has_text: bool) -> dict[str, Any]:
  correct = g["correct"].to_numpy(dtype=float)
  paired = g[g["base_correct"].notna()]
  pol = paired["correct"].to_numpy(dtype=float)
  base = paired["base_correct"].to_numpy(dtype=float)
  n_paired = int(pol.size)
  if n_paired:
    base_acc = float(base.mean())
    gain = float(pol.mean() - base_acc)
    low, high = paired_bootstrap_ci(pol, base, n_boot=n_boot, seed=seed, groups=paired["problem_id"])
    rel = 100.0 * gain / base_acc if base_acc > 0 else float("nan")
  else:
    base_acc = gain = low = high = rel = float("nan")
  tokens_t = float(g["teacher_tokens"].sum())
  tokens_all = tokens_t + float(g["student_tokens"].sum())
  leaks = [answer_leaked(t, a) for t, a in zip(g["teacher_text"], g["answer"])]
  return {
    "n": int(len(g)),
    "n_problems": int(g["problem_id"].nunique()),
    "n_paired": n_paired,
    "accuracy": float(correct.mean()),
    "baseline_accuracy": base_acc,
    "gain_points": 100.0 * gain,
    "gain_rel_pct": rel,
    "gain_ci_low": 100.0 * low,
    "gain_ci_high": 100.0 * high,
    "teacher_fraction": tokens_t / tokens_all if tokens_all > 0 else 0.0,
    "mean_student_tokens": float(g["student_tokens"].mean()),
    "mean_teacher_tokens": float(g["teacher_tokens"].mean()),
    "mean_switches": float(g["switches"].mean()),
    "rescue": int(((base == 0) & (pol == 1)).sum()),
    "harm": int(((base == 1) & (pol == 0)).sum()),
    "leakage_rate": float(np.mean(leaks)) if has_text else float("nan"),
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
    rec.update(_summarize_group(g, n_boot, seed, has_text="teacher_text" in df.columns))
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

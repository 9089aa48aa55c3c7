"""Results files in, one prepared table out: the row schema every analysis starts from.

`load_results` merges every results*.jsonl of an output directory (one file per sweep writer),
keeping the first copy of a duplicated row_id; `read_jsonl_rows` reads one file, skipping the
half-written last line a killed writer can leave and refusing any other corruption by file and
line. `prepare` enforces the schema: the required columns, a default for every optional one (older
results files lack the newer fields) and the types the joins need. The key lists say which columns
name a configuration, a policy's group and a paired unit.

A row is *scored* (`scored`) when it carries a correctness value and no `error`: a row stopped early
(non-finite logits) is written with `correct: false`, but its text is not the model's answer, and a
row with `correct` None/NaN has no value at all. Unscored rows keep `correct` as <NA> (a "boolean"
column), so no analysis can read them as right or wrong by accident; `scored_rows` is the table every
number is computed from, and the summary counts the rest (`n_unscored`).
"""

from __future__ import annotations

import json
import math
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from experiments.sweep.store import RESULTS_GLOB, CorruptResultsError, results_files
from model.errors import UserError

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
  "teacher_text": None,  # None = not recorded: leakage is not measured on the row
  "prediction": None,
  "gold_steps": None,  # steps of the gold solution; None = unknown (excluded from no-leak columns)
  "exemplar_answers": None,  # final answers of the prompt's exemplars; None = not recorded
  "error": None,  # why a row stopped early (non-finite logits); None = it did not
  "step_ids": None,  # 1-based step of each generated token (realized rates)
  "intervention_steps": None,  # steps the teacher wrote
  "answer_step": None,  # the step that completed the answer (None: ran to EOS or a limit)
  "matched_to": None,  # a matched random control: the trigger policy it matches
  # The text bridge's costs (None = not a bridged row): teacher tokens read, teacher calls.
  "teacher_read": None,
  "round_trips": None,
}
NO_LABEL = ""  # the stand-in for a missing teacher/checkpoint label (None never matches in joins)


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
  files = results_files(output_dir)
  if not files:
    raise FileNotFoundError(f"no {RESULTS_GLOB} files in {output_dir}")
  rows = [row for path in files for row in read_jsonl_rows(path)]
  df = pd.DataFrame(rows)
  if "row_id" in df.columns and len(df):
    df = df.drop_duplicates(subset="row_id", keep="first").reset_index(drop=True)
  return df


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
    d[col] = [NO_LABEL if v is None or (isinstance(v, float) and np.isnan(v)) else str(v) for v in d[col]]
  for col in ("task", "student", "policy", "problem_id", "answer"):
    d[col] = d[col].astype(str)
  d["seed"] = d["seed"].fillna(0).astype(int)
  for col in ("student_tokens", "teacher_tokens", "teacher_prefilled", "switches"):
    d[col] = pd.to_numeric(d[col]).fillna(0)
  d["text_recorded"] = np.array([not absent(v) for v in d["teacher_text"]], dtype=bool)  # leakage checkable
  d["teacher_text"] = ["" if absent(v) else str(v) for v in d["teacher_text"]]
  has_error = [not absent(e) and str(e) != "" for e in d["error"]]
  d["scored"] = np.array([not absent(c) and not e for c, e in zip(d["correct"], has_error)], dtype=bool)
  d["correct"] = pd.array(
    [bool(c) if ok else pd.NA for c, ok in zip(d["correct"], d["scored"])], dtype="boolean"
  )
  d["gold_steps"] = pd.to_numeric(d["gold_steps"], errors="coerce").astype(float)  # NaN: unknown
  d["prediction"] = [None if absent(v) else str(v) for v in d["prediction"]]
  d["exemplar_answers"] = [
    tuple(str(a) for a in v) if isinstance(v, (list, tuple, np.ndarray)) else ()
    for v in d["exemplar_answers"]
  ]
  return d


def scored_rows(d: pd.DataFrame) -> pd.DataFrame:
  """The prepared rows with a correctness value (`scored`), `correct` as plain bool: what every
  accuracy, gain and rate is computed over; the others are left out and counted, never read."""
  return d[d["scored"]].astype({"correct": bool})


def absent(value: Any) -> bool:
  """None, pandas' NA or a float NaN (what pandas puts in a column a row did not have)."""
  return value is None or value is pd.NA or (isinstance(value, float) and math.isnan(value))


def is_control(d: pd.DataFrame) -> pd.Series:
  """Which prepared rows are matched random controls (they name a trigger in `matched_to`)."""
  return d["matched_to"].map(lambda v: not absent(v)).astype(bool)


def one_row_per_unit(d: pd.DataFrame) -> pd.DataFrame:
  """The prepared rows with one row per (configuration, policy, unit): what a policy's numbers count.

  A matched control whose spec equals a listed policy's (or another trigger's control at the same
  rate) ran that policy on that unit: the same decode, so it counts once. The listed row is kept,
  else the first control's; which triggers a spec controls is read off the rows before (`matched_to`).
  """
  keys = GROUP_KEYS + UNIT_KEYS
  order = d.assign(_control=is_control(d)).sort_values("_control", kind="stable")  # listed rows first
  return order[~order.duplicated(keys)].drop(columns="_control").sort_index()

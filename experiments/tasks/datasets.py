"""Math word-problem datasets read from local files into one `Problem` record type.

Every loader reads data already on disk (no downloads): its own published file (GSM8K jsonl,
SVAMP/MultiArith json, ASDiv xml) or, detected from the path, parquet files and `datasets`
save_to_disk directories (`dataset_files.py`), with the same record rules either way. Each problem
gets a stable, unique id "<source>/<split>/<record id>" and its gold answer is normalised with
`answers.normalize_number`; a malformed record is a `TaskFormatError` that names the file and the
line, record or row -- a silently skipped problem would bias accuracy.
"""

from __future__ import annotations

import json
import logging
import re
import xml.parsers.expat
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from experiments.tasks.answers import normalize_number
from experiments.tasks.dataset_files import TaskFormatError, is_table_path, task_records
from model.errors import UserError

logger = logging.getLogger(__name__)


class UnknownTaskError(UserError):
  """`load_task` was asked for a task name that has no loader."""


@dataclass(frozen=True)
class Problem:
  """One math word problem with its normalised gold answer.

  `rationale` holds GSM8K-style solution lines (one step per line, `<<a*b=c>>`
  calculator annotations allowed) WITHOUT the final "#### N" line; None when the
  dataset has no worked solution (SVAMP, ASDiv, MultiArith).
  """

  problem_id: str
  question: str
  answer: str
  rationale: str | None
  source: str


_GSM8K_FINAL = re.compile(r"^####\s*(.*?)\s*$", re.MULTILINE)
_ASDIV_UNITS = re.compile(r"\s*\([^()]*\)\s*$")


def _numeric_answer(raw: Any, where: str) -> str:
  """Normalised answer string, or a TaskFormatError naming the record."""
  normalised = normalize_number(raw) if isinstance(raw, (str, int, float)) else None
  if normalised is None:
    raise TaskFormatError(
      f"{where}: answer {raw!r} is not a number; fix the record or remove it from the file"
    )
  return normalised


def _text_field(record: dict[str, Any], key: str, where: str) -> str:
  """A required non-empty string field of a record."""
  if key not in record:
    raise TaskFormatError(f"{where}: missing field {key!r} (fields present: {sorted(record)})")
  value = record[key]
  if not isinstance(value, str) or not value.strip():
    raise TaskFormatError(f"{where}: field {key!r} must be a non-empty string, got {value!r}")
  return value.strip()


def _check_unique(problems: list[Problem], path: Path) -> list[Problem]:
  """Ids key result rows and resume logic, so a duplicate is an error, not a warning."""
  seen: set[str] = set()
  for problem in problems:
    if problem.problem_id in seen:
      raise TaskFormatError(f"{path}: duplicate problem id {problem.problem_id!r}; record ids must be unique")
    seen.add(problem.problem_id)
  return problems


def _read_json_list(path: Path) -> list[Any]:
  """A JSON file whose top level is a list of records."""
  text = path.read_text(encoding="utf-8")
  try:
    data = json.loads(text)
  except json.JSONDecodeError as error:
    raise TaskFormatError(f"{path}:{error.lineno}:{error.colno}: invalid JSON ({error.msg})") from error
  if not isinstance(data, list):
    raise TaskFormatError(f"{path}: expected a JSON list of records, got {type(data).__name__}")
  return data


def parse_gsm8k_solution(solution: str, where: str) -> tuple[str, str]:
  """Split a GSM8K answer field into (rationale lines, normalised final answer)."""
  final = _GSM8K_FINAL.search(solution)
  if final is None:
    raise TaskFormatError(f"{where}: answer has no final '#### N' line")
  rationale = solution[: final.start()].strip("\n")
  return rationale, _numeric_answer(final.group(1), where)


def _jsonl_records(path: Path):
  """(where, record) for each non-blank line of a jsonl file."""
  with path.open(encoding="utf-8") as handle:
    for line_number, line in enumerate(handle, start=1):
      if not line.strip():
        continue
      where = f"{path}:{line_number}"
      try:
        record = json.loads(line)
      except json.JSONDecodeError as error:
        raise TaskFormatError(f"{where}: invalid JSON ({error.msg})") from error
      if not isinstance(record, dict):
        raise TaskFormatError(f"{where}: expected a JSON object, got {type(record).__name__}")
      yield where, record


def load_gsm8k(path: str | Path, split: str | None = None, source: str = "gsm8k") -> list[Problem]:
  """GSM8K: jsonl (one {"question", "answer"} object per line; blank lines allowed) or the hub's parquet.

  `source` lets other GSM8K-format files (the synthetic task) keep their own id prefix.
  """
  path = Path(path)
  split_name, records = task_records(path, split, "gsm8k", source, _jsonl_records)
  problems: list[Problem] = []
  for where, record in records:
    question = _text_field(record, "question", where)
    rationale, answer = parse_gsm8k_solution(_text_field(record, "answer", where), where)
    problems.append(
      Problem(
        problem_id=f"{source}/{split_name}/{len(problems)}",
        question=question,
        answer=answer,
        rationale=rationale or None,
        source=source,
      )
    )
  return _check_unique(problems, path)


def _record_id(record: dict[str, Any], key: str, index: int) -> str:
  """The dataset's own id when it has one (stable across re-orderings), else the index."""
  value = record.get(key)
  if value is None:
    return str(index)
  return str(value).strip().replace("/", "_")


def _json_records(path: Path):
  """(location for errors, record) for each object of a JSON-list file."""
  for index, record in enumerate(_read_json_list(path)):
    where = f"{path}: record {index}"
    if not isinstance(record, dict):
      raise TaskFormatError(f"{where}: expected a JSON object, got {type(record).__name__}")
    yield where, record


def load_svamp(path: str | Path, split: str | None = None) -> list[Problem]:
  """SVAMP json: a list of {"Body", "Question", "Answer", optional "ID", "Equation"}; or parquet."""
  path = Path(path)
  split_name, records = task_records(path, split, "svamp", "svamp", _json_records)
  problems: list[Problem] = []
  for index, (where, record) in enumerate(records):
    body = _text_field(record, "Body", where)
    question = _text_field(record, "Question", where)
    if "Answer" not in record:
      raise TaskFormatError(f"{where}: missing field 'Answer'")
    problems.append(
      Problem(
        problem_id=f"svamp/{split_name}/{_record_id(record, 'ID', index)}",
        question=f"{body} {question}",
        answer=_numeric_answer(record["Answer"], where),
        rationale=None,
        source="svamp",
      )
    )
  return _check_unique(problems, path)


def load_multiarith(path: str | Path, split: str | None = None) -> list[Problem]:
  """MultiArith json: a list of {"sQuestion", "lSolutions": [number], "iIndex"}; or parquet.

  Parquet copies may hold the answer as one scalar (`final_ans`); it counts as a one-item list.
  """
  path = Path(path)
  split_name, records = task_records(path, split, "multiarith", "multiarith", _json_records)
  table = is_table_path(path)
  problems: list[Problem] = []
  for index, (where, record) in enumerate(records):
    question = _text_field(record, "sQuestion", where)
    solutions = record.get("lSolutions")
    if table and isinstance(solutions, (str, int, float)):
      solutions = [solutions]
    if not isinstance(solutions, list) or len(solutions) != 1:
      raise TaskFormatError(
        f"{where}: 'lSolutions' must be a list with exactly one number, got {solutions!r}"
      )
    problems.append(
      Problem(
        problem_id=f"multiarith/{split_name}/{_record_id(record, 'iIndex', index)}",
        question=question,
        answer=_numeric_answer(solutions[0], where),
        rationale=None,
        source="multiarith",
      )
    )
  return _check_unique(problems, path)


@dataclass
class _AsdivRecord:
  """Raw fields of one <Problem> element and the line it starts on."""

  line: int
  problem_id: str | None
  fields: dict[str, str]


def _parse_asdiv_xml(path: Path) -> list[_AsdivRecord]:
  """Collect <Problem> elements with expat, which (unlike ElementTree) reports line numbers."""
  records: list[_AsdivRecord] = []
  stack: list[str] = []
  current: _AsdivRecord | None = None
  text_parts: list[str] = []
  parser = xml.parsers.expat.ParserCreate()

  def start(name: str, attributes: dict[str, str]) -> None:
    nonlocal current
    stack.append(name)
    if name == "Problem":
      current = _AsdivRecord(parser.CurrentLineNumber, attributes.get("ID"), {})
    text_parts.clear()

  def end(name: str) -> None:
    nonlocal current
    stack.pop()
    if name == "Problem" and current is not None:
      records.append(current)
      current = None
    elif current is not None and stack and stack[-1] == "Problem":
      current.fields[name] = "".join(text_parts).strip()
    text_parts.clear()

  parser.StartElementHandler = start
  parser.EndElementHandler = end
  parser.CharacterDataHandler = text_parts.append
  try:
    parser.Parse(path.read_bytes(), True)
  except xml.parsers.expat.ExpatError as error:
    raise TaskFormatError(
      f"{path}:{error.lineno}:{error.offset}: invalid XML ({xml.parsers.expat.errors.messages[error.code]})"
    ) from error
  return records


def parse_asdiv_answer(raw: str, where: str) -> str:
  """ASDiv answers carry units in parentheses ("9 (apples)"); strip them, then normalise."""
  return _numeric_answer(_ASDIV_UNITS.sub("", raw).strip(), where)


def _asdiv_xml_records(path: Path):
  """(where, record) per <Problem>, with its ID attribute as the record's "ID"."""
  for index, record in enumerate(_parse_asdiv_xml(path)):
    where = f"{path}:{record.line}: Problem {record.problem_id or f'#{index}'}"
    yield where, {**record.fields, "ID": record.problem_id or None}


def load_asdiv(path: str | Path, split: str | None = None, skip_non_numeric: bool = False) -> list[Problem]:
  """ASDiv XML (<Machine-Reading-Corpus-File><ProblemSet><Problem ID=..>...), or parquet.

  The real corpus has a few non-numeric answers ("Sunday", "2:3"); they are an error
  unless `skip_non_numeric=True`, which drops them and logs how many and which.
  """
  path = Path(path)
  split_name, records = task_records(path, split, "asdiv", "asdiv", _asdiv_xml_records)
  problems: list[Problem] = []
  skipped: list[str] = []
  for index, (where, record) in enumerate(records):
    body = _text_field(record, "Body", where)
    question = _text_field(record, "Question", where)
    raw_answer = _text_field(record, "Answer", where)
    record_id = _record_id(record, "ID", index)
    try:
      answer = parse_asdiv_answer(raw_answer, where)
    except TaskFormatError:
      if not skip_non_numeric:
        raise
      skipped.append(record["ID"] if record.get("ID") is not None else f"#{index}")
      continue
    problems.append(
      Problem(
        problem_id=f"asdiv/{split_name}/{record_id}",
        question=f"{body} {question}",
        answer=answer,
        rationale=None,
        source="asdiv",
      )
    )
  if skipped:
    logger.warning("%s: skipped %d problems with non-numeric answers: %s", path, len(skipped), skipped)
  return _check_unique(problems, path)


TASK_LOADERS: dict[str, Callable[..., list[Problem]]] = {
  "gsm8k": load_gsm8k,
  "svamp": load_svamp,
  "asdiv": load_asdiv,
  "multiarith": load_multiarith,
}


def load_task(name: str, path: str | Path, **options: Any) -> list[Problem]:
  """Load a task by name from a file or dataset directory (format from the path; `split` picks one).

  "synthetic" reads GSM8K-format data under the synthetic id prefix.
  """
  key = name.strip().lower()
  if key == "synthetic":
    return load_gsm8k(path, source="synthetic", **options)
  if key not in TASK_LOADERS:
    known = ", ".join(sorted([*TASK_LOADERS, "synthetic"]))
    raise UnknownTaskError(f"unknown task {name!r}; choose one of: {known}")
  return TASK_LOADERS[key](path, **options)

"""Task data as published: the dataset hub's parquet files and `datasets` save_to_disk directories.

Users have these files, not hand-made jsonl, so they are read as they are: with pyarrow alone (the
`datasets` package is not needed, and nothing is downloaded). A path may be

- a parquet file: the hub's `main/test-00000-of-00001.parquet`, or any `<split>.parquet`. A shard
  named `<split>-00000-of-00003.parquet` (or `0000.parquet`, the hub's converted layout) brings its
  sibling shards along, so one shard never silently stands for a whole split;
- a directory of parquet files: shards named `<split>-NNNNN-of-NNNNN.parquet` or `<split>.parquet`
  (one split each), numbered shards `0000.parquet` (one split, named after the directory), or split
  subdirectories of those;
- a `save_to_disk` directory: `state.json` (its `_data_files` list the `data-*.arrow` shards, Arrow
  IPC streams) with `dataset_info.json`; or a DatasetDict directory (`dataset_dict.json`) whose
  split subdirectories are such directories.

Where several splits are there, the split comes from `split` (or from the path pointing at one);
otherwise the error lists them. Rows come back as dicts keyed by the task's own field names, so
`datasets.py` turns them into Problems exactly as it does jsonl/json/xml records.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable

from model.errors import MissingFileError, UserError

TABLE_SUFFIXES = (".parquet", ".arrow")
_SHARD = re.compile(r"^(?P<split>.+?)-(?P<index>\d{5})-of-(?P<count>\d{5})$")
_STATE = "state.json"
_DATASET_DICT = "dataset_dict.json"


class TaskFormatError(UserError):
  """A task file or one of its records does not have the expected format."""


@dataclass(frozen=True)
class Column:
  """A record field and the column names published copies use for it, first match wins."""

  key: str
  names: tuple[str, ...]
  required: bool = True


# Column names of the published parquet copies, mapped to each format's own record keys: GSM8K's
# hub files use its jsonl names; SVAMP (ChilleD/SVAMP) its json names; ASDiv (EleutherAI/asdiv) lower
# case and no ids; MultiArith (ChilleD/MultiArith) `question` and a scalar `final_ans`.
GSM8K_COLUMNS = (Column("question", ("question",)), Column("answer", ("answer",)))
SVAMP_COLUMNS = (
  Column("Body", ("Body", "body")),
  Column("Question", ("Question", "question")),
  Column("Answer", ("Answer", "answer")),
  Column("ID", ("ID", "id"), required=False),
)
ASDIV_COLUMNS = SVAMP_COLUMNS  # the same fields (ASDiv answers keep their units: "9 (apples)")
MULTIARITH_COLUMNS = (
  Column("sQuestion", ("sQuestion", "question")),
  Column("lSolutions", ("lSolutions", "final_ans", "answer")),
  Column("iIndex", ("iIndex", "id", "ID"), required=False),
)
PUBLISHED_COLUMNS = {
  "gsm8k": GSM8K_COLUMNS,
  "svamp": SVAMP_COLUMNS,
  "asdiv": ASDIV_COLUMNS,
  "multiarith": MULTIARITH_COLUMNS,
}
# Each format's own file suffixes; another task's suffix is a clear error, not a confusing parse error.
NATIVE_SUFFIXES = {
  "gsm8k": (".jsonl", ".json"),
  "svamp": (".json",),
  "asdiv": (".xml",),
  "multiarith": (".json",),
}
_OTHER_FORMATS = (".jsonl", ".json", ".xml", ".csv", ".tsv")


def split_label(name: str, path: Path) -> str:
  """The split part of problem ids: non-empty, lower case, no '/'."""
  label = name.strip().lower()
  if not label or "/" in label:
    raise TaskFormatError(f"{path}: split name {label!r} must be non-empty without '/'")
  return label


def is_table_path(path: Path) -> bool:
  """Parquet and Arrow data: a .parquet/.arrow path, or any directory (jsonl/json/xml are files)."""
  return path.suffix.lower() in TABLE_SUFFIXES or path.is_dir()


def read_table_rows(
  path: Path, split: str | None, columns: tuple[Column, ...]
) -> tuple[str, list[tuple[str, dict[str, Any]]]]:
  """(split label, [(where, record)]) for the split that `path` (and `split`) name, in file order."""
  if not path.exists():
    raise MissingFileError(f"task data {path} does not exist; check the path")
  name, files = _locate(path, split)
  rows: list[tuple[str, dict[str, Any]]] = []
  for file in files:
    rows.extend(_file_rows(file, columns))
  return split_label(name, path), rows


def task_records(path: Path, split: str | None, task: str, label: str, read: Callable[[Path], Iterable]):
  """(split label, (where, record) pairs): `read` for the task's own format, else the table readers.

  `label` names the task in errors (the synthetic task reads GSM8K's format).
  """
  if is_table_path(path):
    return read_table_rows(path, split, PUBLISHED_COLUMNS[task])
  native = NATIVE_SUFFIXES[task]
  if path.suffix.lower() in _OTHER_FORMATS and path.suffix.lower() not in native:
    raise TaskFormatError(
      f"{path}: {label} is read from {'/'.join(native)}, .parquet or a dataset directory, not "
      f"{path.suffix}; check the task name or convert the file"
    )
  return split_label(split if split is not None else path.stem, path), read(path)


def _locate(path: Path, split: str | None) -> tuple[str, list[Path]]:
  """The split's name and its data files, in order."""
  wanted = split.strip() if split is not None else None
  if path.suffix.lower() == ".arrow":
    if (path.parent / _STATE).is_file():
      raise TaskFormatError(
        f"{path} is one shard of a `datasets` save_to_disk directory; set the path to its directory {path.parent}"
      )
    raise TaskFormatError(
      f"{path}: a lone .arrow file is not read; save the dataset with save_to_disk or to_parquet and use that"
    )
  if path.is_file():
    name, files = _parquet_file_split(path)
    return wanted or name, files
  if (path / _STATE).is_file():
    return _saved_dataset(path, wanted)
  splits = _directory_splits(path)
  if not splits:
    raise TaskFormatError(
      f"{path}: no task data here; expected *.parquet files, a `datasets` save_to_disk directory "
      f"({_STATE}, data-*.arrow) or a DatasetDict directory ({_DATASET_DICT}); point the path at one"
    )
  chosen = _choose_split(path, splits, wanted)
  found = splits[chosen]
  if isinstance(found, Path):  # a split subdirectory: it must hold one split itself
    name, files = _locate(found, None)
    return wanted or name, files
  return chosen, found


def _choose_split(path: Path, splits: dict[str, Any], wanted: str | None) -> str:
  """The one split asked for, or the only one; else an error listing them and how to pick one."""
  names = sorted(splits)
  if wanted is not None and wanted in splits:
    return wanted
  if wanted is None and len(names) == 1:
    return names[0]
  example = "test" if "test" in splits else names[0]
  found = splits[example]
  where = found if isinstance(found, Path) else found[0]
  asked = f"has no split {wanted!r}" if wanted is not None else "holds several splits"
  raise TaskFormatError(
    f"{path} {asked} (splits: {', '.join(names)}); point the path at one (e.g. {where}) or pass split={example!r}"
  )


def _directory_splits(path: Path) -> dict[str, Path | list[Path]]:
  """Split name -> its parquet files (in this directory) or its directory (saved or parquet)."""
  splits: dict[str, Path | list[Path]] = {}
  parquet = sorted(path.glob("*.parquet"))
  if parquet and all(file.stem.isdigit() for file in parquet):
    return {path.name: _numbered_shards(parquet)}
  for file in parquet:
    shard = _SHARD.match(file.stem)
    name = shard.group("split") if shard else file.stem
    if name in splits:
      continue
    if shard is None and any(_shard_split(p) == name for p in parquet):
      raise TaskFormatError(
        f"{path}: both {file.name} and shards of split {name!r}; keep one copy of the split"
      )
    splits[name] = _parquet_file_split(file)[1]
  for sub in sorted(p for p in path.iterdir() if p.is_dir()):
    if (sub / _STATE).is_file() or any(sub.glob("*.parquet")):
      splits.setdefault(sub.name, sub)
  return splits


def _parquet_file_split(path: Path) -> tuple[str, list[Path]]:
  """A single parquet file's split name, with the sibling shards of the same split."""
  if path.suffix.lower() != ".parquet":
    raise TaskFormatError(f"{path}: expected a .parquet file or a directory")
  if path.stem.isdigit():
    return path.parent.name, _numbered_shards([p for p in path.parent.glob("*.parquet") if p.stem.isdigit()])
  shard = _SHARD.match(path.stem)
  if shard is None:
    return path.stem, [path]
  siblings = [p for p in path.parent.glob("*.parquet") if _shard_split(p) == shard.group("split")]
  return shard.group("split"), _complete_shards(siblings)


def _shard_split(file: Path) -> str | None:
  """The split of a `<split>-NNNNN-of-NNNNN` shard; None for other names."""
  shard = _SHARD.match(file.stem)
  return shard.group("split") if shard else None


def _complete_shards(files: list[Path]) -> list[Path]:
  """`<split>-i-of-n` shards in order, all n of them: a missing shard would drop problems silently."""
  counts = {int(_SHARD.match(f.stem).group("count")) for f in files}
  first = files[0]
  shard = _SHARD.match(first.stem)
  count = max(counts)
  expected = [
    first.with_name(f"{shard.group('split')}-{i:05d}-of-{count:05d}{first.suffix}") for i in range(count)
  ]
  missing = [p.name for p in expected if p not in files]
  if len(counts) > 1:
    raise TaskFormatError(f"{first.parent}: split {shard.group('split')!r} mixes shard counts; keep one copy")
  if missing:
    raise TaskFormatError(
      f"{first.parent}: split {shard.group('split')!r} is missing shards {', '.join(missing)}; "
      "copy every shard of the split"
    )
  return expected


def _numbered_shards(files: list[Path]) -> list[Path]:
  """The hub's converted layout (0000.parquet, 0001.parquet, ...) in numeric order."""
  return sorted(files, key=lambda f: int(f.stem))


def _saved_dataset(directory: Path, wanted: str | None) -> tuple[str, list[Path]]:
  """A save_to_disk Dataset: its arrow shards from state.json, its split from state.json's `_split`."""
  state_path = directory / _STATE
  try:
    state = json.loads(state_path.read_text(encoding="utf-8"))
  except json.JSONDecodeError as error:
    raise TaskFormatError(f"{state_path}:{error.lineno}:{error.colno}: invalid JSON ({error.msg})") from error
  entries = state.get("_data_files") if isinstance(state, dict) else None
  if (
    not isinstance(entries, list)
    or not entries
    or not all(isinstance(e, dict) and "filename" in e for e in entries)
  ):
    raise TaskFormatError(
      f"{state_path}: no '_data_files' list of {{'filename': ...}}; re-save the dataset with save_to_disk"
    )
  files = [directory / entry["filename"] for entry in entries]
  missing = [f.name for f in files if not f.is_file()]
  if missing:
    raise TaskFormatError(
      f"{directory}: {_STATE} lists missing data files {', '.join(missing)}; copy them too"
    )
  name = wanted or state.get("_split") or directory.name
  return str(name), files


def _file_rows(file: Path, columns: tuple[Column, ...]) -> list[tuple[str, dict[str, Any]]]:
  """(where, record) for each row of one parquet or arrow file, columns renamed to the record keys."""
  table = _read_arrow(file) if file.suffix.lower() == ".arrow" else _read_parquet(file)
  chosen = _match_columns(file, table.column_names, columns)
  values = {key: table.column(name).to_pylist() for key, name in chosen.items()}
  return [(f"{file}: row {i}", {key: values[key][i] for key in values}) for i in range(table.num_rows)]


def _match_columns(file: Path, present: list[str], columns: tuple[Column, ...]) -> dict[str, str]:
  """Record key -> the column that holds it; a missing required column names what was there."""
  chosen: dict[str, str] = {}
  for column in columns:
    name = next((n for n in column.names if n in present), None)
    if name is not None:
      chosen[column.key] = name
    elif column.required:
      raise TaskFormatError(
        f"{file}: no column for {column.key!r} (looked for {', '.join(column.names)}; columns: "
        f"{', '.join(present)}); rename the column, or check the task name"
      )
  return chosen


def _pyarrow():
  """pyarrow, imported when a table file is read (jsonl/json/xml tasks do not need it)."""
  try:
    import pyarrow
    import pyarrow.ipc
    import pyarrow.parquet
  except ImportError as error:
    raise TaskFormatError("reading parquet/arrow task data needs pyarrow: pip install pyarrow") from error
  return pyarrow


def _read_parquet(file: Path):
  pa = _pyarrow()
  try:
    return pa.parquet.read_table(file)
  except (pa.ArrowException, OSError) as error:
    raise TaskFormatError(
      f"{file}: not a readable parquet file ({_first_line(error)}); copy it again"
    ) from error


def _read_arrow(file: Path):
  """datasets writes Arrow IPC streams; the IPC file format is accepted too."""
  pa = _pyarrow()
  try:
    with pa.OSFile(str(file)) as source:
      return pa.ipc.open_stream(source).read_all()
  except pa.ArrowInvalid:
    pass
  try:
    with pa.OSFile(str(file)) as source:
      return pa.ipc.open_file(source).read_all()
  except (pa.ArrowException, OSError) as error:
    raise TaskFormatError(
      f"{file}: not an Arrow IPC stream or file ({_first_line(error)}); re-save the dataset"
    ) from error


def _first_line(error: Exception) -> str:
  """pyarrow's messages can run to several lines; a user error is one."""
  return (str(error).splitlines() or [type(error).__name__])[0]

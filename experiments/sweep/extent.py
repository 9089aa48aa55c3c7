"""A sweep's extent: which rows its config lists (problems, students, policies, seeds, controls).

Why apart from the content settings (manifest.py): the extent may change between runs of one output
dir, content may not. A sweep grows with the research (more problems, a third policy, a second seed,
a checkpoint that arrived): rows already in the results are kept and never decoded again, new rows
are decoded. Rows a later config no longer lists stay in the results; the manifest's `extent` (the
latest run's) says which rows the report covers by default, `held` the union of every run's.

The report's side: `report_extent(output_dir)` (None: report every row), then `listed(rows, extent)`
or `lister(extent)` per results row.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Callable, Iterable

ALL = None  # a held problem count: every problem of the task source (a format-1 dir without a limit)


def extent_of(
  problem_ids: list[str], students: Iterable[tuple], policies: Iterable[str], seeds, matched_random: bool
) -> dict:
  """The extent of one run: its problems (the task source's first N, by id), students as
  (name, checkpoint), canonical policy specs, seeds, and whether matched random controls are added."""
  return {
    "problems": len(problem_ids),
    "problem_ids": list(problem_ids),
    "students": [{"name": n, "checkpoint": c} for n, c in dict.fromkeys(students)],
    "policies": sorted(set(policies)),
    "seeds": sorted({int(s) for s in seeds}),
    "matched_random": bool(matched_random),
  }


def summary(extent: dict) -> dict:
  """The extent without its problem ids (what the run history records; the count names them)."""
  return {k: v for k, v in extent.items() if k != "problem_ids"}


def union(held: dict | None, extent: dict) -> dict:
  """What the dir holds after a run of `extent`: the union of both (problems: the larger prefix)."""
  new = summary(extent)
  if held is None:
    return new
  count = ALL if ALL in (held["problems"], new["problems"]) else max(held["problems"], new["problems"])
  students = held["students"] + [s for s in new["students"] if s not in held["students"]]
  return {
    "problems": count,
    "students": students,
    "policies": sorted(set(held["policies"]) | set(new["policies"])),
    "seeds": sorted(set(held["seeds"]) | set(new["seeds"])),
    "matched_random": bool(held["matched_random"] or new["matched_random"]),
  }


def _label(value: Any) -> Any:
  """A results row's optional label as the extent writes it: None for None, NaN or '' (the report's
  prepared frames write a missing checkpoint as '')."""
  if value is None or value == "" or (isinstance(value, float) and math.isnan(value)):
    return None
  return value


def lister(extent: dict) -> Callable[[dict], bool]:
  """row -> whether the config of `extent` lists that results row (a plain dict, or a frame's record).

  A matched random control (`matched_to` set) is listed when controls are on and its trigger is.
  """
  problems, seeds, policies = set(extent["problem_ids"]), set(extent["seeds"]), set(extent["policies"])
  students = {(s["name"], s["checkpoint"]) for s in extent["students"]}

  def listed(row: dict) -> bool:
    matched_to = _label(row.get("matched_to"))
    policy_listed = (
      (extent["matched_random"] and matched_to in policies) if matched_to else row["policy"] in policies
    )
    return (
      policy_listed
      and str(row["problem_id"]) in problems
      and (row["student"], _label(row.get("checkpoint"))) in students
      and int(_label(row.get("seed")) or 0) in seeds
    )

  return listed


def in_extent(row: dict, extent: dict) -> bool:
  return lister(extent)(row)


def listed(rows: Iterable[dict], extent: dict | None) -> list[dict]:
  """The rows `extent` lists; all of them when None (no extent recorded, or every row reported)."""
  rows = list(rows)
  if extent is None:
    return rows
  keep = lister(extent)
  return [r for r in rows if keep(r)]


def report_extent(output_dir: str | Path, all_rows: bool | None = None) -> dict | None:
  """The extent a report of `output_dir` covers; None: every row.

  all_rows: the report's own switch; None takes the sweep's (`report_rows` in the manifest, set by
  `--config.report_all_rows`). None too when the dir has no manifest, or its extent names no problem
  ids (a dir last run before extents were recorded).
  """
  from experiments.sweep.manifest import read

  m = read(output_dir)
  if m is None or "problem_ids" not in m["extent"]:
    return None
  every = m.get("report_rows") == "all" if all_rows is None else all_rows
  return None if every else m["extent"]

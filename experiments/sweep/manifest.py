"""manifest.json: what an output dir's rows are, which of them the latest config lists, and its runs.

Resuming skips every row whose id is already in the results, so a resume with settings that change
what a row IS (another temperature, a retrained model, an edited dataset) would silently mix two
sweeps under one report. Settings that only decide WHICH rows exist may change: a sweep grows with
the research. The first run writes `manifest.json` (atomically, before any result row); each later
run checks it and records itself:

- `content` (CONTENT_KEYS): the settings that define what a row holds: the task (name, its file's
  sha256, the generator's settings), prompt style, exemplars (and the ones chosen), teacher, sampling
  and limits, step delimiter, dtype. A resume whose content differs is refused before anything is
  written, naming each differing key (old -> new) and the fix.
- `students`: each student's model identity (experiments.sweep.identity), by label (`name`, or
  `name@checkpoint`). A student the dir holds must keep its files; a new student may join.
- `extent` (experiments.sweep.extent): which rows the latest run's config lists (problems by id,
  students, policies, seeds, matched controls): what the report covers by default (`report_rows`:
  "extent", or "all" with --config.report_all_rows); `held`: the union over every run.
- `runs`: each run's start, extent, code version and, once it finished, the rows it decoded and kept.
- `code`: the first run's package version and git commit; a resume on other code only warns.
- `paths`: where the latest run's files were (informational).

Everything else may change between runs because it does not change a row: batch_size, teacher_chunk,
teacher_sub_batches, fork, shared_prefix, mesh, sharding rules, distributed, output_dir and the
paths. Format-1 manifests (every row-defining key in one `rows` section) are migrated on read.
Multi-process sweeps: process 0 writes the manifest; the others wait for it (on the shared output
dir) and check it.
"""

from __future__ import annotations

import datetime
import json
import re
import sys
import time
from pathlib import Path
from typing import Any

from experiments.files import atomic_write_text
from experiments.sweep import extent as sweep_extent
from experiments.sweep.config import SweepConfig
from experiments.sweep.content import CONTENT_KEYS, content_settings, student_label
from experiments.sweep.grid import ModelEntry
from experiments.sweep.identity import code_version, describe_code, model_identity
from model.errors import UserError

MANIFEST = "manifest.json"
FORMAT = 2
WAIT_S = 300.0  # how long a process other than 0 waits for process 0's manifest
MAX_LISTED = 12  # differing keys named in the error before "and N more"
# Recorded since format 2: a migrated manifest lacks them, and they are not compared there.
LATER_KEYS = ("exemplars.chosen",)


class ManifestError(UserError):
  """The output dir holds another sweep, or its manifest is unreadable or missing where required."""


def _now() -> str:
  return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")


def build(
  cfg: SweepConfig, policies: list, entries: list[ModelEntry], problem_ids: list[str], chosen: list[str]
) -> dict:
  """The manifest of this run as a new dir would hold it (nothing is read from or written to the dir)."""
  paths = {"task": cfg.task.path, "exemplars": cfg.exemplars.path}
  paths.update({f"students[{i}]": e.path for i, e in enumerate(entries)})
  paths["teacher"] = cfg.teacher.path
  extent = sweep_extent.extent_of(
    problem_ids,
    [(e.name, e.checkpoint) for e in entries],
    [p.spec for p in policies],
    cfg.seeds,
    cfg.matched_random,
  )
  code = code_version()
  return {
    "format": FORMAT,
    "created": _now(),
    "content": content_settings(cfg, chosen),
    "students": {student_label(e.name, e.checkpoint): model_identity(e.path) for e in entries},
    "extent": extent,
    "held": sweep_extent.summary(extent),
    "report_rows": "all" if cfg.report_all_rows else "extent",
    "runs": [{"started": _now(), "extent": sweep_extent.summary(extent), "code": code}],
    "code": code,
    "paths": paths,
  }


# --------------------------------------------------------------------------- reading (and migrating)


def _migrate_v1(data: dict) -> dict:
  """A format-1 manifest (every row-defining setting in `rows`) as format 2: content apart, the
  extent rebuilt from limit / num_problems, policies, seeds and students (problem ids unknown)."""
  rows = data["rows"]
  task = dict(rows.get("task") or {})
  num_problems = task.pop("num_problems", None)
  limit = rows.get("limit")
  if "file" in task:  # a task file: its first `limit` problems, or all of them
    count = limit
  else:  # the generator made num_problems; the first `limit` of them were evaluated
    count = min(c for c in (limit, num_problems) if c is not None) if (limit or num_problems) else None
  content = {k: rows[k] for k in CONTENT_KEYS if k in rows}
  content["task"] = task
  students = rows.get("students") or []
  extent = {
    "problems": count,
    "students": [{"name": s["name"], "checkpoint": s.get("checkpoint")} for s in students],
    "policies": sorted(rows.get("policies") or []),
    "seeds": sorted(rows.get("seeds") or []),
    "matched_random": bool(rows.get("matched_random")),
  }
  return {
    "format": FORMAT,
    "created": data.get("created"),
    "content": content,
    "students": {student_label(s["name"], s.get("checkpoint")): s.get("model") for s in students},
    "extent": extent,
    "held": dict(extent),
    "report_rows": "extent",
    "runs": [{"started": data.get("created"), "extent": dict(extent), "code": data.get("code"), "format": 1}],
    "code": data.get("code"),
    "paths": data.get("paths", {}),
  }


def read(output_dir: str | Path) -> dict | None:
  """The output dir's manifest in the current format, None when it has none; an unreadable one is a
  ManifestError. A format-1 manifest is migrated here (the file is rewritten by the next run)."""
  path = Path(output_dir) / MANIFEST
  if not path.exists():
    return None
  try:
    data = json.loads(path.read_text())
  except (ValueError, UnicodeDecodeError) as e:
    raise ManifestError(f"{path} is not valid JSON ({e}); restore it, or move {output_dir} aside") from None
  if isinstance(data, dict) and data.get("format", 1) == 1 and isinstance(data.get("rows"), dict):
    return _migrate_v1(data)
  if not isinstance(data, dict) or not isinstance(data.get("content"), dict):
    raise ManifestError(
      f"{path} is not a sweep manifest (no 'content' or 'rows'); restore it, or move {output_dir} aside"
    )
  return data


# --------------------------------------------------------------------------- comparing


def _key(k: str) -> str:
  return k if re.fullmatch(r"[A-Za-z0-9_-]+", k) else f'["{k}"]'


def flatten(value: Any, prefix: str = "") -> dict[str, Any]:
  """Nested dicts (and lists of dicts) -> {'a.b': v, 'students.s["config.json"]': v}."""
  if isinstance(value, dict):
    out: dict[str, Any] = {}
    for k, v in value.items():
      key = _key(k)
      key = key if not prefix else f"{prefix}{key}" if key.startswith("[") else f"{prefix}.{key}"
      out.update(flatten(v, key))
    return out or {prefix: {}}
  if isinstance(value, list) and value and all(isinstance(v, dict) for v in value):
    return {k: v for i, item in enumerate(value) for k, v in flatten(item, f"{prefix}[{i}]").items()}
  return {prefix: value}


_ABSENT = object()  # a key only one of the two manifests has


def _show(value: Any) -> str:
  text = "(absent)" if value is _ABSENT else json.dumps(value)
  return text if len(text) <= 60 else text[:57] + "..."


def differences(old: dict, new: dict) -> list[str]:
  """'key: old -> new' for each flattened key whose value differs, in the new manifest's order."""
  a, b = flatten(old), flatten(new)
  keys = list(b) + [k for k in a if k not in b]
  return [
    f"{k}: {_show(a.get(k, _ABSENT))} -> {_show(b.get(k, _ABSENT))}"
    for k in keys
    if a.get(k, _ABSENT) != b.get(k, _ABSENT)
  ]


def _compared(old: dict, new: dict) -> tuple[dict, dict]:
  """What must match: content (keys recorded since format 2 only where the old manifest has them)
  and the identity of every student both runs name."""
  a, b = flatten(old["content"]), flatten(new["content"])
  for side in (a, b):  # a manifest from before stopping existed: its rows ran to EOS or a limit
    side.setdefault("stop_at_answer", False)
  for later in LATER_KEYS:
    if later not in a:
      b.pop(later, None)
  shared = [s for s in new["students"] if s in old["students"]]
  return (
    {"content": a, "students": {s: old["students"][s] for s in shared}},
    {"content": b, "students": {s: new["students"][s] for s in shared}},
  )


def check(output_dir: str | Path, manifest: dict, warn: bool = True) -> dict | None:
  """Refuses (ManifestError) a manifest on disk whose content or shared students differ; returns it
  (None when absent). `warn`: say so on stderr when the latest run was on other code."""
  old = read(output_dir)
  if old is None:
    return None
  a, b = _compared(old, manifest)
  diffs = differences(a["content"], b["content"]) + differences(
    {"students": a["students"]}, {"students": b["students"]}
  )
  if diffs:
    listed = "; ".join(diffs[:MAX_LISTED]) + (
      f"; and {len(diffs) - MAX_LISTED} more" if len(diffs) > MAX_LISTED else ""
    )
    raise ManifestError(
      f"{output_dir} holds a different sweep; these settings differ (before -> now): {listed}. Give this "
      f"run a new --config.output_dir, or restore those settings to resume it (problems, policies, seeds "
      f"and students may change; the sweep's settings are in {Path(output_dir) / MANIFEST})"
    )
  last = (old.get("runs") or [{}])[-1].get("code", old.get("code"))
  if warn and last != manifest["code"]:
    print(
      f"warning: {Path(output_dir) / MANIFEST} was last written by code {describe_code(last)}; resuming "
      f"with {describe_code(manifest['code'])} (the row-defining settings match)",
      file=sys.stderr,
    )
  return old


def merged(old: dict | None, new: dict) -> dict:
  """The manifest after this run starts: the old one's content, first code and runs, the students it
  holds, with this run's extent, report choice and paths, the union held, and this run appended."""
  if old is None:
    return new
  held = sweep_extent.union(old.get("held"), new["extent"])
  return {
    **new,
    "created": old.get("created", new["created"]),
    "content": new["content"],  # equal to the old where compared, and with the LATER_KEYS it lacked
    "students": {**old["students"], **new["students"]},
    "held": held,
    "runs": list(old.get("runs") or []) + new["runs"],
    "code": old.get("code", new["code"]),
  }


def ensure(
  output_dir: str | Path, manifest: dict, *, writer: bool, wait_s: float = WAIT_S, poll_s: float = 0.2
) -> None:
  """The writer (process 0) checks the manifest and records this run; the others wait for it and check.

  Called while holding this process's results lock, before any result row is written.
  """
  output_dir = Path(output_dir)
  path = output_dir / MANIFEST
  if writer:
    old = check(output_dir, manifest)
    if old is None and any(p.stat().st_size for p in output_dir.glob("results*.jsonl")):
      print(
        f"warning: {output_dir} has results but no {MANIFEST} (written before sweeps recorded one): "
        "recording this run's settings; the rows already there were not checked against them",
        file=sys.stderr,
      )
    atomic_write_text(path, json.dumps(merged(old, manifest), indent=2) + "\n")
    return
  deadline = time.monotonic() + wait_s
  while not path.exists():
    if time.monotonic() > deadline:
      raise ManifestError(
        f"process 0 has not written {path} after {wait_s:.0f} s: every process of a sweep needs the same "
        "output_dir on a shared filesystem, and process 0 must be running"
      )
    time.sleep(poll_s)
  check(output_dir, manifest)


def finish(output_dir: str | Path, counts: dict) -> None:
  """Records the end of this run (the last in `runs`: process 0 alone writes, under its lock)."""
  m = read(output_dir)
  m["runs"][-1].update(finished=_now(), **counts)
  atomic_write_text(Path(output_dir) / MANIFEST, json.dumps(m, indent=2) + "\n")

"""manifest.json: an output dir holds one sweep, and a resume must be the same sweep.

Resuming skips every row whose id is already in the results, so a resume with settings that change
what a row holds (another temperature, a retrained model, an edited dataset) would silently mix two
sweeps under one report. The first run writes `manifest.json` (atomically, before any result row):

- `rows`: the settings that define which rows exist and what each one holds (ROW_KEYS). Files are
  compared by content, not path: a data file by its bytes' sha256, a model directory by each top-level
  file's sha256 (config.json, tokenizer files, the safetensors index) and, for files over
  FULL_HASH_BYTES (the weights), their size plus the sha256 of three sampled blocks. Not mtimes: a
  copy (rsync, another host's copy of the model) changes them without changing a row, and a
  retrained model of the same shape changes the sampled blocks.
- `code`: package version and git commit, recorded for provenance; a resume on other code only warns.
- `paths`: where the files were (informational).

Everything else may change between runs because it does not change a row: batch_size, teacher_chunk,
teacher_sub_batches, fork, shared_prefix, mesh, sharding rules, distributed, output_dir, and the
paths themselves (tests compare rows across fork, shared_prefix, sub-batches, meshes and processes). A resume whose `rows` differ is refused before anything is
written, naming each differing key (old -> new) and the fix. Multi-process sweeps: process 0 writes
the manifest; the others wait for it (on the shared output dir) and check it.
"""

from __future__ import annotations

import dataclasses
import datetime
import hashlib
import importlib.metadata
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from ml_collections import ConfigDict

from experiments.files import atomic_write_text
from experiments.sweep.config import ExemplarsConfig, SweepConfig, TaskConfig
from experiments.sweep.students import student_entries
from model.errors import MissingFileError, UserError

MANIFEST = "manifest.json"
FORMAT = 1
PACKAGE = "first-step-guidance"
FULL_HASH_BYTES = 16 << 20  # files up to this size are hashed whole; larger ones are sampled
SAMPLE_BYTES = 64 << 10  # each of the three sampled blocks (start, middle, end) of a large file
WAIT_S = 300.0  # how long a process other than 0 waits for process 0's manifest
MAX_LISTED = 12  # differing keys named in the error before "and N more"
ROW_KEYS = (
  "task",
  "limit",
  "prompt_style",
  "exemplars",
  "students",
  "teacher",
  "policies",
  "matched_random",
  "seeds",
  "max_new_tokens",
  "max_steps",
  "temperature",
  "top_k",
  "top_p",
  "step_delimiter",
  "dtype",
)


class ManifestError(UserError):
  """The output dir holds another sweep, or its manifest is unreadable or missing where required."""


# --------------------------------------------------------------------------- identities


def file_identity(path: str | Path, what: str = "file") -> str:
  """sha256 of a file's bytes, or for a large file its size and the sha256 of three sampled blocks."""
  path = Path(path)
  if not path.is_file():
    raise MissingFileError(f"{what} {path} does not exist")
  size = path.stat().st_size
  h = hashlib.sha256()
  with path.open("rb") as f:
    if size <= FULL_HASH_BYTES:
      for block in iter(lambda: f.read(1 << 20), b""):
        h.update(block)
      return f"sha256 {h.hexdigest()}"
    for offset in (0, (size - SAMPLE_BYTES) // 2, size - SAMPLE_BYTES):
      f.seek(offset)
      h.update(f.read(SAMPLE_BYTES))
  return f"{size} bytes, sampled sha256 {h.hexdigest()}"


def model_identity(model_dir: str | Path) -> dict[str, str]:
  """Identity of every top-level file of a model directory (hidden files and *.md aside)."""
  root = Path(model_dir)
  if root.is_file():  # a .gguf file: config, tokenizer and weights in one
    return {root.name: file_identity(root)}
  dirs = [root] + ([root / "default"] if (root / "default").is_dir() else [])  # an orbax step's params
  files = sorted(p for d in dirs for p in d.iterdir() if p.is_file() and not p.name.startswith("."))
  return {str(p.relative_to(root)): file_identity(p) for p in files if p.suffix != ".md"}


def code_version() -> dict[str, Any]:
  """Package version and git commit of this checkout (None where unknown; git is never required)."""
  try:
    version = importlib.metadata.version(PACKAGE)
  except importlib.metadata.PackageNotFoundError:
    version = None
  root = Path(__file__).resolve().parents[2]

  def git(*args: str) -> str | None:
    try:
      r = subprocess.run(["git", "-C", str(root), *args], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
      return None
    return r.stdout.strip() if r.returncode == 0 else None

  commit = git("rev-parse", "HEAD")
  dirty = git("status", "--porcelain", "--untracked-files=no") if commit else None
  return {
    "package": PACKAGE,
    "version": version,
    "git_commit": commit,
    "git_dirty": bool(dirty) if commit else None,
  }


# --------------------------------------------------------------------------- row-defining settings


def _plain(value: Any) -> Any:
  """JSON's view of a config value (ConfigDicts -> dicts, tuples -> lists), as a reread manifest holds it."""
  if isinstance(value, ConfigDict):
    value = value.to_dict()
  return json.loads(json.dumps(value))


def _synthetic(task: TaskConfig) -> dict:
  """The generator's settings that differ from its defaults: an explicit default equals an omitted
  one, and a knob added later (at its default) does not make older output dirs look different."""
  from experiments.tasks.synthetic import SyntheticConfig

  settings = _plain(dataclasses.asdict(task.synthetic))
  defaults = _plain(dataclasses.asdict(SyntheticConfig()))
  return {k: v for k, v in settings.items() if v != defaults[k]}


def _task(task: TaskConfig) -> dict:
  out = {"name": task.name}
  if task.path:
    out["file"] = file_identity(task.path, "task file")
  else:  # only the embedded generator reads these
    out["num_problems"] = task.num_problems
    out["synthetic"] = _synthetic(task) if task.synthetic is not None else None
  out.update({k: _plain(v) for k, v in task.extra})
  return out


def _exemplars(ex: ExemplarsConfig) -> dict:
  if not ex.k:
    return {"k": 0}  # zero-shot: the other exemplar settings are unused
  return {
    "k": ex.k,
    "seed": ex.seed,
    "distinct_answers": ex.distinct_answers,
    "task": ex.task,
    "file": file_identity(ex.path, "exemplar file") if ex.path else None,
  }


def _teacher(cfg: SweepConfig) -> dict | None:
  t = cfg.teacher
  if t.path:
    return {"name": t.name, "model": model_identity(t.path)}
  if not t.url:
    return None
  served = {"name": t.name, "url": t.url, "model": t.model}
  # A chat teacher's rows depend on the message it is sent (completions manifests stay as they were).
  return served if t.api == "completions" else {**served, "api": t.api, "chat_template": t.chat_template}


def row_settings(cfg: SweepConfig, policies: list) -> dict:
  """ROW_KEYS of a validated config, normalized as the sweep reads them (defaults, -1 = none, specs)."""
  rows = {
    "task": _task(cfg.task),
    "limit": cfg.limit,
    "prompt_style": cfg.prompt_style,
    "exemplars": _exemplars(cfg.exemplars),
    "students": [
      {"name": e.name, "checkpoint": e.checkpoint, "model": model_identity(e.path)}
      for e in student_entries(cfg.students)  # checkpoint runs expanded: one identity per step
    ],
    "teacher": _teacher(cfg),
    "policies": sorted({p.spec for p in policies}),
    "matched_random": cfg.matched_random,
    "seeds": sorted({int(s) for s in cfg.seeds}),
    "max_new_tokens": cfg.max_new_tokens,
    "max_steps": cfg.max_steps,
    "temperature": cfg.temperature,
    "top_k": cfg.top_k,
    "top_p": cfg.top_p,
    "step_delimiter": cfg.step_delimiter,
    "dtype": cfg.dtype,
  }
  return _plain(rows)


def build(cfg: SweepConfig, policies: list) -> dict:
  """The manifest of this run (nothing is read from or written to the output dir)."""
  paths = {"task": cfg.task.path, "exemplars": cfg.exemplars.path}
  paths.update({f"students[{i}]": e.path for i, e in enumerate(student_entries(cfg.students))})
  paths["teacher"] = cfg.teacher.path
  return {
    "format": FORMAT,
    "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    "rows": row_settings(cfg, policies),
    "code": code_version(),
    "paths": paths,
  }


# --------------------------------------------------------------------------- comparing


def flatten(value: Any, prefix: str = "") -> dict[str, Any]:
  """Nested dicts (and lists of dicts) -> {'a.b': v, 'students[0].model["config.json"]': v}."""
  if isinstance(value, dict):
    out: dict[str, Any] = {}
    for k, v in value.items():
      key = f'{prefix}["{k}"]' if "." in k else f"{prefix}.{k}" if prefix else k
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


def read(output_dir: str | Path) -> dict | None:
  """The output dir's manifest, None when it has none; an unreadable one is a ManifestError."""
  path = Path(output_dir) / MANIFEST
  if not path.exists():
    return None
  try:
    data = json.loads(path.read_text())
  except (ValueError, UnicodeDecodeError) as e:
    raise ManifestError(f"{path} is not valid JSON ({e}); restore it, or move {output_dir} aside") from None
  if not isinstance(data, dict) or not isinstance(data.get("rows"), dict):
    raise ManifestError(f"{path} is not a sweep manifest (no 'rows'); restore it, or move {output_dir} aside")
  return data


def check(output_dir: str | Path, manifest: dict, warn: bool = True) -> dict | None:
  """Refuses (ManifestError) a manifest on disk whose rows differ; returns it (None when absent).

  `warn`: say so on stderr when the matching manifest was written by other code.
  """
  old = read(output_dir)  # the manifest on disk, as parsed JSON (plain dicts)
  if old is None:
    return None
  diffs = differences(old["rows"], manifest["rows"])
  if diffs:
    listed = "; ".join(diffs[:MAX_LISTED]) + (
      f"; and {len(diffs) - MAX_LISTED} more" if len(diffs) > MAX_LISTED else ""
    )
    raise ManifestError(
      f"{output_dir} holds a different sweep; these settings differ (before -> now): {listed}. Give this "
      f"run a new --config.output_dir, or restore those settings to resume it (the sweep's settings are in "
      f"{Path(output_dir) / MANIFEST})"
    )
  if warn and old.get("code") != manifest["code"]:
    print(
      f"warning: {Path(output_dir) / MANIFEST} was written by code {_code(old.get('code'))}; resuming with "
      f"{_code(manifest['code'])} (the row-defining settings match)",
      file=sys.stderr,
    )
  return old


def _code(code: dict | None) -> str:
  code = code or {}
  commit = code.get("git_commit")
  return f"{code.get('version')}" + (
    f" at {commit[:12]}{'+changes' if code.get('git_dirty') else ''}" if commit else ""
  )


def ensure(
  output_dir: str | Path, manifest: dict, *, writer: bool, wait_s: float = WAIT_S, poll_s: float = 0.2
) -> None:
  """The writer (process 0) checks or writes the manifest; the others wait for it and check it.

  Called while holding this process's results lock, before any result row is written.
  """
  output_dir = Path(output_dir)
  path = output_dir / MANIFEST
  if writer:
    if check(output_dir, manifest) is not None:
      return
    if any(p.stat().st_size for p in output_dir.glob("results*.jsonl")):
      print(
        f"warning: {output_dir} has results but no {MANIFEST} (written before sweeps recorded one): "
        "recording this run's settings; the rows already there were not checked against them",
        file=sys.stderr,
      )
    atomic_write_text(path, json.dumps(manifest, indent=2) + "\n")
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

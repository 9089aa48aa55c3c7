"""What a file, a model directory and this checkout are, by content: what the manifest compares.

Files are compared by content, not path: a data file by its bytes' sha256, a model directory by each
top-level file's sha256 (config.json, tokenizer files, the safetensors index) and, for files over
FULL_HASH_BYTES (the weights), their size plus the sha256 of three sampled blocks. Not mtimes: a copy
(rsync, another host's copy of the model) changes them without changing a row, and a retrained model
of the same shape changes the sampled blocks.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import subprocess
from pathlib import Path
from typing import Any, Iterable

from model.errors import MissingFileError

PACKAGE = "first-step-guidance"
FULL_HASH_BYTES = 16 << 20  # files up to this size are hashed whole; larger ones are sampled
SAMPLE_BYTES = 64 << 10  # each of the three sampled blocks (start, middle, end) of a large file


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


def ids_digest(ids: Iterable[str]) -> str:
  """sha256 of a set of row (or problem) ids, order-free: names a set too long to list."""
  return "sha256 " + hashlib.sha256("\n".join(sorted(ids)).encode()).hexdigest()


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


def describe_code(code: dict | None) -> str:
  """'0.1.0 at abcdef012345+changes': a code version in one phrase."""
  code = code or {}
  commit = code.get("git_commit")
  return f"{code.get('version')}" + (
    f" at {commit[:12]}{'+changes' if code.get('git_dirty') else ''}" if commit else ""
  )

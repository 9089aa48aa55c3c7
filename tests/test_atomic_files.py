"""experiments.files: whole-file writes that leave the old file or the new one, never a mix or a temp."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from experiments import files


def test_atomic_write_creates_parents_and_syncs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
  synced = []
  real_fsync = files.os.fsync
  monkeypatch.setattr(files.os, "fsync", lambda fd: (synced.append(fd), real_fsync(fd)))
  path = tmp_path / "a" / "b" / "out.txt"
  files.atomic_write_text(path, "caf\u00e9\n")
  assert path.read_bytes() == "caf\u00e9\n".encode() and len(synced) == 1
  files.atomic_write_bytes(path, b"new")
  assert path.read_bytes() == b"new" and len(synced) == 2
  assert [p.name for p in path.parent.iterdir()] == ["out.txt"]  # no temp files left


def test_atomic_write_failure_keeps_old_file_and_removes_temp(
  tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
  path = tmp_path / "summary.csv"
  path.write_text("old")

  def fail(src: Any, dst: Any) -> None:
    raise OSError("disk on fire")

  monkeypatch.setattr(files.os, "replace", fail)
  with pytest.raises(OSError, match="disk on fire"):
    files.atomic_write_text(path, "new")
  monkeypatch.undo()
  with pytest.raises(TypeError):
    files.atomic_write_bytes(path, "not bytes")  # type: ignore[arg-type]  # fails inside the write
  assert path.read_text() == "old"
  assert [p.name for p in tmp_path.iterdir()] == ["summary.csv"]

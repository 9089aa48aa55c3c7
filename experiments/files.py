"""Whole-file writes that a reader (or a crash) never sees half done.

The one way experiments/ writes a whole file: the data goes to a fresh temp file in the target's
directory (same filesystem, so the rename is atomic), is flushed and fsynced, and then replaces the
target with os.replace. A reader sees the old file or the new one, never a torn mix; on any failure
(including KeyboardInterrupt) the temp file is removed and the target is left as it was.
"""

from __future__ import annotations

import contextlib
import os
import uuid
from pathlib import Path


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes) -> None:
  """Write `data` to `path` atomically; missing parent directories are created."""
  path = Path(path)
  path.parent.mkdir(parents=True, exist_ok=True)
  # A fresh hidden name opened with "xb" (not mkstemp, whose files are 0600) so the file gets the usual
  # umask permissions, and concurrent writers of the same target never share a temp file.
  tmp = path.parent / f".{path.name}.{os.getpid()}.{uuid.uuid4().hex}.tmp"
  try:
    with open(tmp, "xb") as f:
      f.write(data)
      f.flush()
      os.fsync(f.fileno())
    os.replace(tmp, path)
  except BaseException:
    with contextlib.suppress(FileNotFoundError):
      os.unlink(tmp)
    raise


def atomic_write_text(path: str | os.PathLike[str], text: str, encoding: str = "utf-8") -> None:
  """`atomic_write_bytes` of `text` encoded (UTF-8 unless told); newlines are written as given."""
  atomic_write_bytes(path, text.encode(encoding))

"""One writer per results file: an exclusive flock on `<results file>.lock`, held for the sweep's life.

Why flock: the kernel drops it when the holding process dies (kill -9 included), so a crash never
leaves a stale lock to clean up; the lock file itself stays and only records who held it last
(pid, host, start time), which is what a refused second sweep prints. A second sweep on the same
output dir (or a second process given the same process id) is refused before it reads or writes
the results. On a filesystem without lock support (some FUSE mounts) the sweep warns and runs
unlocked.
"""

from __future__ import annotations

import datetime
import errno
import fcntl
import os
import socket
import sys
from pathlib import Path

from model.errors import UserError

# errnos meaning "this filesystem cannot lock", not "someone holds the lock"
_NO_LOCKS = {errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS, errno.EINVAL}


class ResultsLockedError(UserError):
  """Another process is writing the same results file."""


def lock_path(results: Path) -> Path:
  return results.with_name(results.name + ".lock")


def _holder() -> str:
  started = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
  return f"pid {os.getpid()} on host {socket.gethostname()}, since {started}"


class WriterLock:
  """An exclusive, non-blocking flock on the lock file next to `results`; release() or process exit frees it."""

  def __init__(self, results: str | os.PathLike):
    self.results = Path(results)
    self.path = lock_path(self.results)
    self._fd: int | None = None
    self.path.parent.mkdir(parents=True, exist_ok=True)
    # No O_TRUNC: the file holds the current holder's description until we own the lock.
    fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
      fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
      holder = os.pread(fd, 4096, 0).decode("utf-8", "replace").strip() or "a process that has not said who"
      os.close(fd)
      raise ResultsLockedError(
        f"{self.results} is being written by another sweep ({holder}; lock {self.path}). Wait for it "
        "to finish or stop it, or give this sweep another --config.output_dir"
      ) from None
    except OSError as e:
      if e.errno not in _NO_LOCKS:
        os.close(fd)
        raise
      print(
        f"warning: the filesystem of {self.path} does not support locks ({e.strerror}): a second sweep "
        "on this output dir would not be detected",
        file=sys.stderr,
      )
    os.ftruncate(fd, 0)
    os.pwrite(fd, (_holder() + "\n").encode(), 0)
    self._fd = fd

  def release(self) -> None:
    """Frees the lock (closing the descriptor drops the flock); the file stays for the next holder."""
    if self._fd is not None:
      os.close(self._fd)
      self._fd = None

  def __del__(self):
    self.release()

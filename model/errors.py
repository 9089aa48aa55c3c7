"""Errors a user can fix, and the one way every CLI reports them.

Every such error derives from `UserError`; a CLI body runs under `report_user_errors`, which prints
`error: <message>` (one line, naming the problem and the fix) and exits with status 2. Set
`FSG_DEBUG=1` to get the traceback instead.
"""

from __future__ import annotations

import os
import sys
from typing import Callable, TypeVar

T = TypeVar("T")
DEBUG_ENV = "FSG_DEBUG"
EXIT_USER_ERROR = 2


class UserError(ValueError):
  """A bad argument, config, file or model that the user can fix; the message says how."""


class ModelLoadError(UserError):
  """A model directory, checkpoint or config that cannot be loaded as asked."""


class MissingFileError(UserError, FileNotFoundError):
  """A file or directory the user named does not exist (or holds nothing to use)."""


def report_user_errors(body: Callable[[], T]) -> T:
  """Runs a CLI's body; a UserError becomes one line on stderr and exit status 2.

  A missing file named on the command line (FileNotFoundError, e.g. from open()) is a user error too.
  With FSG_DEBUG=1 the exception propagates with its traceback.
  """
  try:
    return body()
  except (UserError, FileNotFoundError) as e:
    if os.environ.get(DEBUG_ENV, "") not in ("", "0"):
      raise
    message = " ".join(str(e).split()) or type(e).__name__
    print(f"error: {message}", file=sys.stderr)
    sys.exit(EXIT_USER_ERROR)

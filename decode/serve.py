"""`python -m decode.serve`: the entry point of the completions server (decode.serving.server)."""

from __future__ import annotations

import sys

from decode.serving.server import main

if __name__ == "__main__":
  sys.exit(main())

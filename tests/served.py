"""`python -m decode.serve` in a subprocess on a free port of 127.0.0.1, for the tests that need a
server: started, its URL read from the line it prints once the model is loaded, stopped after."""

from __future__ import annotations

import contextlib
import os
import queue
import subprocess
import sys
import threading


@contextlib.contextmanager
def serve(model_dir, *args: str, env: dict | None = None):
  """Yields (url, process) of a server for `model_dir` (extra CLI `args`); exits on its own after
  5 idle minutes should a test process die without stopping it."""
  cmd = [sys.executable, "-m", "decode.serve", "--model", str(model_dir), "--host", "127.0.0.1"]
  cmd += ["--port", "0", "--exit-after-idle", "300", *args]
  proc = subprocess.Popen(
    cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env={**os.environ, **(env or {})}
  )
  lines: queue.Queue = queue.Queue()
  threading.Thread(target=lambda: [lines.put(x) for x in proc.stdout], daemon=True).start()
  try:
    first = lines.get(timeout=120)  # printed once the model is loaded and the port is listening
    assert first.startswith("serving ") and " at http://127.0.0.1:" in first, first
    yield first.split()[-1], proc
  finally:
    proc.terminate()
    try:
      proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
      proc.kill()
      proc.wait()

"""`--watch SECONDS`: run the sweep again whenever a training run writes a new checkpoint.

Why: a `students` entry naming a run's checkpoint directory (`steps="all"` or `"every:N"`) picks up
the checkpoints written since the last run, and the sweep decodes only their rows. Watching polls
the students' checkpoint directories every SECONDS and runs the sweep when a checkpoint appears that
the last run did not list, once its files have stopped changing for one poll (a checkpoint still
being written is not read). Bounded: `--watch_runs N` stops after N runs (0: no bound); Ctrl-C stops
it between runs, and mid-run leaves every finished row in the results (the next run resumes).
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Callable

from experiments.sweep.config import SweepConfig
from experiments.sweep.students import student_entries


def _signature(path: str) -> tuple:
  """A checkpoint's files as (name, size, mtime): unchanged between polls = written."""
  root = Path(path)
  if root.is_file():
    st = root.stat()
    return ((root.name, st.st_size, st.st_mtime_ns),)
  files = []
  for d, _, names in os.walk(root):
    for n in names:
      st = (Path(d) / n).stat()
      files.append((str(Path(d, n).relative_to(root)), st.st_size, st.st_mtime_ns))
  return tuple(sorted(files))


def arrived(cfg: SweepConfig, listed: set[tuple]) -> dict[tuple, tuple]:
  """Students (name, checkpoint) the checkpoint directories list now that `listed` lacks, with
  their files' signature."""
  return {
    (e.name, e.checkpoint): _signature(e.path)
    for e in student_entries(cfg.students)
    if (e.name, e.checkpoint) not in listed
  }


def watch(
  cfg: SweepConfig,
  run: Callable[[SweepConfig], dict],
  every_s: float,
  max_runs: int = 0,
  sleep: Callable[[float], None] = time.sleep,
  say: Callable[[str], None] = print,
) -> int:
  """Runs the sweep, then again for every new checkpoint, until `max_runs` runs (0: until Ctrl-C).
  Returns how many runs it made."""
  runs = 0
  try:
    listed = {(e.name, e.checkpoint) for e in student_entries(cfg.students)}
    run(cfg)
    runs += 1
    seen: dict[tuple, tuple] = {}
    while max_runs <= 0 or runs < max_runs:
      sleep(every_s)
      new = arrived(cfg, listed)
      if not new:
        continue
      if new != seen:  # appeared or still changing: wait one more poll
        seen = new
        continue
      say(
        f"watch: new checkpoint(s) {', '.join(f'{n} {c}' for n, c in sorted(new, key=str))}: running the sweep"
      )
      listed |= set(new)
      seen = {}
      run(cfg)
      runs += 1
  except KeyboardInterrupt:
    say(f"watch: stopped after {runs} run(s); finished rows are in the results (run again to resume)")
  return runs

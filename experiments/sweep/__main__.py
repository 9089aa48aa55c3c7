"""`python -m experiments.sweep --config configs/NAME.py [--config.key=value ...]`: run, resume or grow a sweep.

`--watch SECONDS` runs it again whenever a student's checkpoint directory gains a checkpoint
(experiments/sweep/watch.py). Every error a user can fix, a bad flag or an unknown config key
included, is `error: ...` on stderr and exit status 2 (experiments.cli, model.errors).
"""

from __future__ import annotations

from pathlib import Path

from absl import app, flags
from ml_collections import config_flags

from experiments.cli import config_value, parse_flags
from experiments.sweep.config import SweepConfig, parse_config
from experiments.sweep.run import run_sweep
from model.errors import report_user_errors

_CONFIG = config_flags.DEFINE_config_file(
  "config", None, "sweep config file (configs/NAME.py)", lock_config=True
)
_WATCH = flags.DEFINE_float(
  "watch", 0.0, "poll the students' checkpoint directories every SECONDS and run again for new ones"
)
_WATCH_RUNS = flags.DEFINE_integer("watch_runs", 0, "with --watch: stop after this many runs (0: Ctrl-C)")


def summary_line(cfg: SweepConfig, stats: dict) -> str:
  """What one run did: rows decoded and kept, rows left out of the report, calls and compilations."""
  outside = stats.get("outside", 0)
  left_out = (
    f"; {outside} rows the config no longer lists stay in the results, left out of the report "
    "(--config.report_all_rows=True reports them)"
    if outside
    else ""
  )
  superseded = f", superseded {stats['superseded']}" if stats.get("superseded") else ""
  return (
    f"sweep done: decoded {stats['decoded']} new rows, kept {stats['kept']}{superseded} "
    f"({stats['rows']} listed){left_out}; {stats['loop_calls']} loop calls, "
    f"{stats['compiles']} compilation(s); report: {Path(cfg.output_dir) / 'report.md'}"
  )


def main(argv) -> None:
  del argv
  cfg = report_user_errors(lambda: parse_config(config_value(_CONFIG, "configs/NAME.py")))  # the one parse

  def once(c: SweepConfig) -> dict:
    stats = report_user_errors(lambda: run_sweep(c))
    print(summary_line(c, stats), flush=True)
    return stats

  if _WATCH.value > 0:
    from experiments.sweep.watch import watch

    report_user_errors(lambda: watch(cfg, once, _WATCH.value, _WATCH_RUNS.value))
  else:
    once(cfg)


if __name__ == "__main__":
  flags.FLAGS.unparse_flags()
  app.run(main, flags_parser=parse_flags)

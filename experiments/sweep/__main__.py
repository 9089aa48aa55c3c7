"""`python -m experiments.sweep --config configs/NAME.py [--config.key=value ...]`: run or resume a sweep."""

from __future__ import annotations

import sys
from pathlib import Path

from absl import app, flags
from ml_collections import config_flags

from experiments.sweep.run import run_sweep
from model.errors import report_user_errors

_CONFIG = config_flags.DEFINE_config_file(
  "config", None, "sweep config file (configs/NAME.py)", lock_config=True
)


def main(argv) -> None:
  del argv
  cfg = _CONFIG.value
  if cfg is None:
    print("error: pass --config configs/NAME.py", file=sys.stderr)
    sys.exit(2)
  stats = report_user_errors(lambda: run_sweep(cfg))
  print(
    f"sweep done: {stats['rows']} rows, {stats['loop_calls']} loop calls, {stats['compiles']} compilation(s); "
    f"report: {Path(cfg.output_dir) / 'report.md'}"
  )


if __name__ == "__main__":
  flags.FLAGS.unparse_flags()
  app.run(main)

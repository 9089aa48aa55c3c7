"""`python -m experiments.sweep --config configs/NAME.py [--config.key=value ...]`: run or resume a sweep."""
from __future__ import annotations

import sys
from pathlib import Path

from absl import app, flags
from ml_collections import config_flags

from experiments.sweep.run import USER_ERRORS, run_sweep

_CONFIG = config_flags.DEFINE_config_file("config", None, "sweep config file (configs/NAME.py)", lock_config=True)


def main(argv) -> None:
  del argv
  cfg = _CONFIG.value
  if cfg is None:
    print("error: pass --config configs/NAME.py", file=sys.stderr)
    sys.exit(2)
  try:
    stats = run_sweep(cfg)
  except USER_ERRORS as e:
    print(f"error: {e}", file=sys.stderr)
    sys.exit(2)
  print(f"sweep done: {stats['rows']} rows, {stats['loop_calls']} loop calls, {stats['compiles']} compilation(s); "
        f"report: {Path(cfg.output_dir) / 'report.md'}")


if __name__ == "__main__":
  flags.FLAGS.unparse_flags()
  app.run(main)

"""`python -m experiments.sweep --config configs/NAME.py [--config.key=value ...]`: run or resume a sweep.

Every error a user can fix, a bad flag or an unknown config key included, is `error: ...` on stderr
and exit status 2 (experiments.cli, model.errors).
"""

from __future__ import annotations

from pathlib import Path

from absl import app, flags
from ml_collections import config_flags

from experiments.cli import config_value, parse_flags
from experiments.sweep.config import parse_config
from experiments.sweep.run import run_sweep
from model.errors import report_user_errors

_CONFIG = config_flags.DEFINE_config_file(
  "config", None, "sweep config file (configs/NAME.py)", lock_config=True
)


def main(argv) -> None:
  del argv

  def body() -> tuple:
    cfg = parse_config(config_value(_CONFIG, "configs/NAME.py"))  # the one parse of the config
    return cfg, run_sweep(cfg)

  cfg, stats = report_user_errors(body)
  print(
    f"sweep done: {stats['rows']} rows, {stats['loop_calls']} loop calls, {stats['compiles']} compilation(s); "
    f"report: {Path(cfg.output_dir) / 'report.md'}"
  )


if __name__ == "__main__":
  flags.FLAGS.unparse_flags()
  app.run(main, flags_parser=parse_flags)

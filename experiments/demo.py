"""`make demo`: the whole study offline on the embedded default, in minutes on a laptop CPU.

Runs configs/demo.py (synthetic test split; shipped teacher, two distilled students and saved
checkpoints of one student's training run; never / always / step:1..4) and prints where the report
is. Re-running resumes: finished rows are not decoded again.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

from configs import demo as demo_config


def main() -> int:
  from experiments.sweep.run import run_sweep
  from model.errors import report_user_errors

  cfg = demo_config.get_config()
  models = [cfg.teacher.path] + [s.get("path") or s.get("checkpoints") for s in cfg.students]
  missing = [p for p in models if not Path(p).is_dir()]
  if missing:
    print(
      f"error: demo checkpoints missing: {', '.join(missing)}. Rebuild them with the commands in "
      f"{demo_config.ASSETS}/README.md",
      file=sys.stderr,
    )
    return 2
  start = time.time()
  stats = report_user_errors(lambda: run_sweep(cfg))
  out = Path(cfg.output_dir)
  print(
    f"\nDemo finished in {time.time() - start:.0f} s: {stats['rows']} rows, {stats['loop_calls']} loop calls, "
    f"{stats['compiles']} compilations (one per model architecture; checkpoints share one)."
  )
  summary = out / "summary.csv"
  if summary.exists():
    import pandas as pd

    s = pd.read_csv(summary)
    main_rows = s[s["checkpoint"].isna()] if "checkpoint" in s else s
    cols = [c for c in ("student", "policy", "accuracy", "gain_points", "teacher_fraction") if c in s]
    print(main_rows[cols].to_string(index=False))
  print(f"\nReport: {out / 'report.md'}\nPlots:  {out / 'accuracy_vs_step.png'}")
  return 0


if __name__ == "__main__":
  sys.exit(main())

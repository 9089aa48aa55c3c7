"""`make demo`: the whole study offline on the embedded default, in minutes on a laptop CPU.

Runs configs/demo.py (synthetic test split; shipped teacher, two distilled students and saved
checkpoints of one student's training run; never / always / step:1..4), then the hard-step variants
(`configs.demo.hard_step_config`: the hard decision placed at step 1, then at step 2, its competing
quantity phrased two ways), plots them side by side, and prints where the reports are. Re-running resumes: finished rows are not decoded again.
"""

from __future__ import annotations

import io
import sys
import time
from pathlib import Path

from configs import demo as demo_config
from decode.core.policy import STUDENT_ONLY
from experiments.files import atomic_write_bytes

HARD_STEP_PLOT = "hard_step_accuracy_vs_step.png"  # in the main output dir


def main(argv=None) -> int:
  import argparse

  from model.startup_logs import add_verbose_flag, quiet_startup_logs

  parser = argparse.ArgumentParser(prog="python -m experiments.demo", description=__doc__.split("\n\n")[0])
  add_verbose_flag(parser)
  quiet_startup_logs(parser.parse_args(argv).verbose)
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
  _print_summary(out, "main sweep")
  dirs = [out]
  for k, phrasing in demo_config.HARD_VARIANTS:
    variant = demo_config.hard_step_config(k, phrasing)
    began = time.time()
    report_user_errors(lambda: run_sweep(variant))
    title = f"hard decision at step {k}, {phrasing} phrasing"
    print(f"\n{title}: {time.time() - began:.0f} s")
    _print_summary(Path(variant.output_dir), title)
    dirs.append(Path(variant.output_dir))
  figure = out / HARD_STEP_PLOT
  atomic_write_bytes(figure, plot_hard_steps())
  print(f"\nAll of make demo: {time.time() - start:.0f} s")
  for d in dirs:
    print(f"Report: {d / 'report.md'}  Plot: {d / 'accuracy_vs_step.png'}")
  print(f"Hard-step variants side by side: {figure}")
  return 0


def plot_hard_steps() -> bytes:
  """Accuracy vs the step the teacher writes, one panel per variant, `never` dashed: does the peak move?"""
  import numpy as np
  import pandas as pd
  from matplotlib.backends.backend_agg import FigureCanvasAgg
  from matplotlib.figure import Figure

  variants = demo_config.HARD_VARIANTS
  phrasings = list(dict.fromkeys(p for _, p in variants))
  steps = sorted({k for k, _ in variants})
  fig = Figure(figsize=(4.2 * len(steps), 3.4 * len(phrasings)))
  axes = fig.subplots(len(phrasings), len(steps), squeeze=False, sharey=True)
  for k, phrasing in variants:
    ax = axes[phrasings.index(phrasing)][steps.index(k)]
    s = pd.read_csv(Path(demo_config.hard_step_config(k, phrasing).output_dir) / "summary.csv")
    for i, (student, rows) in enumerate(s.groupby("student", sort=True)):
      timed = rows[rows.policy.str.startswith("step:")].sort_values("step_k")
      base = float(rows[rows.policy == STUDENT_ONLY].accuracy.iloc[0])
      x = timed.step_k + (i - 0.5) * 0.08
      # The paired gain CI around `never`, read as an interval on the accuracy.
      below = timed.accuracy - (base + timed.gain_ci_low / 100)
      above = base + timed.gain_ci_high / 100 - timed.accuracy
      yerr = 100 * np.clip(np.stack([below.to_numpy(), above.to_numpy()]), 0, None)
      line = ax.errorbar(x, 100 * timed.accuracy, yerr=yerr, marker="o", capsize=3, label=student)
      ax.axhline(100 * base, ls="--", lw=1, color=line[0].get_color())
    ax.set_title(f"hard decision at step {k} ({phrasing} phrasing)", fontsize=9)
    ax.set_xticks(range(1, 4), [f"step:{j}" for j in range(1, 4)])
    ax.set_xlabel("step the teacher writes")
    ax.axvline(k, color="grey", alpha=0.25, lw=8)
    if steps.index(k) == 0:
      ax.set_ylabel("accuracy (%); dashed: never")
    ax.legend(fontsize=7)
  fig.tight_layout()
  FigureCanvasAgg(fig)
  buf = io.BytesIO()
  fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
  return buf.getvalue()


def _print_summary(out: Path, title: str) -> None:
  """The main students' rows of a sweep's summary.csv (checkpoints left out)."""
  summary = out / "summary.csv"
  if not summary.exists():
    return
  import pandas as pd

  s = pd.read_csv(summary)
  main_rows = s[s["checkpoint"].isna()] if "checkpoint" in s else s
  cols = [c for c in ("student", "policy", "accuracy", "gain_points", "teacher_fraction") if c in s]
  print(f"{title}:\n{main_rows[cols].to_string(index=False)}")


if __name__ == "__main__":
  sys.exit(main())

"""Write summary.csv, counterfactuals.csv, report.md and the PNG plots for one sweep's output directory.

The numbers come from analysis, the figures from plots and the text from markdown. Every file is
written atomically (experiments.files: temp file in the same directory, fsync, os.replace), so a
reader never sees half a report.

CLI: `python -m experiments.report OUTPUT_DIR` regenerates everything from the results files.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Sequence

import pandas as pd

from experiments.files import atomic_write_bytes, atomic_write_text
from experiments.report import analysis
from experiments.report.formatting import CSV_MISSING
from experiments.report.markdown import render_markdown
from experiments.report.outputs import (
  COUNTERFACTUALS,
  PLOT_CHECKPOINTS,
  PLOT_FRACTION,
  PLOT_RESCUE,
  PLOT_STEP,
)
from experiments.report.plots import (
  plot_accuracy_vs_step,
  plot_accuracy_vs_step_by_checkpoint,
  plot_accuracy_vs_teacher_fraction,
  plot_earliest_rescue,
)
from model.errors import MissingFileError, report_user_errors
from model.startup_logs import add_verbose_flag, quiet_startup_logs


def write_report(
  output_dir: str | Path, df: pd.DataFrame | None = None, all_rows: bool | None = None
) -> dict[str, Path]:
  """Write summary.csv, report.md and the plots into `output_dir`; returns name -> path.

  `df` defaults to every results*.jsonl in `output_dir` (see analysis.load_results). Keys:
  'summary', 'report', 'accuracy_vs_step', 'accuracy_vs_teacher_fraction'; when the rows carry more
  than one checkpoint label, 'accuracy_vs_step_by_checkpoint'; when step:K rows pair with never rows,
  'counterfactuals' (counterfactuals.csv) and 'earliest_rescue'.
  """
  output_dir = Path(output_dir)
  if df is None:
    df = _listed_rows(output_dir, analysis.load_results(output_dir), all_rows)
  if len(df) == 0:
    raise FileNotFoundError(f"no result rows for {output_dir}")
  summary = analysis.summarize(df)
  paths: dict[str, Path] = {"summary": output_dir / "summary.csv"}
  atomic_write_text(paths["summary"], summary.to_csv(index=False, na_rep=CSV_MISSING))
  timing = analysis.timing_differences(df)
  counterfactual = analysis.counterfactuals(df)
  rescue = analysis.earliest_rescue_distribution(counterfactual)
  if len(counterfactual):
    paths["counterfactuals"] = output_dir / COUNTERFACTUALS
    atomic_write_text(paths["counterfactuals"], counterfactual.to_csv(index=False, na_rep=CSV_MISSING))

  plots = {
    "Accuracy vs intervention step": (PLOT_STEP, plot_accuracy_vs_step),
    "Accuracy vs teacher-token fraction": (PLOT_FRACTION, plot_accuracy_vs_teacher_fraction),
  }
  if len(analysis.checkpoints_of(df)) > 1:
    plots["Accuracy vs intervention step, per checkpoint"] = (
      PLOT_CHECKPOINTS,
      plot_accuracy_vs_step_by_checkpoint,
    )
  for name, plot in plots.values():
    paths[name.removesuffix(".png")] = output_dir / name
    atomic_write_bytes(output_dir / name, plot(summary))
  if len(rescue):
    plots["Earliest step whose guidance rescues a student-alone failure"] = (
      PLOT_RESCUE,
      plot_earliest_rescue,
    )
    paths[PLOT_RESCUE.removesuffix(".png")] = output_dir / PLOT_RESCUE
    atomic_write_bytes(output_dir / PLOT_RESCUE, plot_earliest_rescue(rescue))

  text = render_markdown(
    df,
    summary,
    {caption: name for caption, (name, _) in plots.items()},
    output_dir.name,
    timing=timing,
    rescue=rescue,
  )
  paths["report"] = output_dir / "report.md"
  atomic_write_text(paths["report"], text)
  return paths


def _listed_rows(output_dir: Path, df: pd.DataFrame, all_rows: bool | None) -> pd.DataFrame:
  """The rows the sweep's config lists (a grown sweep's dir may hold rows it no longer lists, which
  the report leaves out unless `all_rows`, or the sweep's report_all_rows, says otherwise)."""
  from experiments.sweep.extent import lister, report_extent

  extent = report_extent(output_dir, all_rows)
  if extent is None or len(df) == 0:
    return df
  keep = lister(extent)
  return df[[keep(r) for r in df.to_dict("records")]].reset_index(drop=True)


def main(argv: Sequence[str] | None = None) -> int:
  """Exit 0; a missing dir, no results or a corrupt results line: `error: ...` and exit 2 (SystemExit)."""
  parser = argparse.ArgumentParser(prog="python -m experiments.report", description=__doc__.splitlines()[0])
  parser.add_argument("output_dir", type=Path, help="directory holding results*.jsonl")
  parser.add_argument(
    "--all-rows",
    action="store_true",
    default=None,
    help="report every row, also those the sweep's config no longer lists (default: the sweep's choice)",
  )
  add_verbose_flag(parser)
  args = parser.parse_args(argv)
  quiet_startup_logs(args.verbose)

  def body() -> dict[str, Path]:
    if not args.output_dir.is_dir():
      raise MissingFileError(f"{args.output_dir} is not a directory")
    return write_report(args.output_dir, all_rows=args.all_rows)

  for name, path in report_user_errors(body).items():
    print(f"{name}: {path}")
  return 0


if __name__ == "__main__":
  sys.exit(main())

"""Write summary.csv, counterfactuals.csv, report.md and the PNG plots for one sweep's output directory.

The narrative states what the numbers show, including when they contradict the paper
(e.g. when teacher help at step 1 is not the best timing). Every file is written atomically
(experiments.files: temp file in the same directory, fsync, os.replace), so a reader never sees
half a report.

CLI: `python -m experiments.report OUTPUT_DIR` regenerates everything from the results files.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd

from experiments.files import atomic_write_bytes, atomic_write_text
from experiments.report import analysis
from experiments.report.plots import (
  baseline_row,
  ci,
  keyed,
  label,
  markdown_table,
  missing,
  pct,
  plot_accuracy_vs_step,
  plot_accuracy_vs_step_by_checkpoint,
  plot_accuracy_vs_teacher_fraction,
  plot_earliest_rescue,
  points,
  summary_row,
)
from model.errors import MissingFileError, report_user_errors

PLOT_STEP = "accuracy_vs_step.png"
PLOT_FRACTION = "accuracy_vs_teacher_fraction.png"
PLOT_CHECKPOINTS = "accuracy_vs_step_by_checkpoint.png"
PLOT_RESCUE = "earliest_rescue.png"
CONFIG_COLUMNS = ["task", "student", "teacher", "checkpoint"]
COUNTERFACTUALS = "counterfactuals.csv"
# Warn about few-shot copying when predictions equal an exemplar's answer at least this often and
# at least this much more often than the gold answers do (fractions).
COPY_WARN_RATE = 0.30
COPY_WARN_MARGIN = 0.10


# --------------------------------------------------------------------------- narrative


def _config_findings(s: pd.DataFrame, task: str, student: str, teacher: str, checkpoint: str) -> list[str]:
  """Bullet points for one (task, student, teacher, checkpoint): baseline, best policy, timing."""
  rows = s[(s.task == task) & (s.student == student) & (s.teacher == teacher) & (s.checkpoint == checkpoint)]
  base = baseline_row(s, task, student, teacher, checkpoint)
  always = summary_row(s, task, student, teacher, checkpoint, "always")
  out = []
  ref = f"- Student alone: {pct(base.accuracy) if base is not None else 'n/a (no never rows)'}"
  if always is not None:
    ref += f"; teacher writes everything (`always`): {pct(always.accuracy)}"
  out.append(ref + ".")
  guided = rows[~rows.policy.isin(["never", "always"])]
  if not guided.empty:
    best = guided.sort_values(["accuracy", "teacher_fraction"], ascending=[False, True]).iloc[0]
    line = (
      f"- Best guided policy: `{best.policy}` at {pct(best.accuracy)} "
      f"(gain {points(best.gain_points)} points, 95% CI {ci(best.gain_ci_low, best.gain_ci_high)}"
      + (f", {best.gain_rel_pct:+.0f}% relative" if not missing(best.gain_rel_pct) else "")
      + f"; teacher wrote {pct(best.teacher_fraction)} of tokens)."
    )
    if not missing(best.gain_points) and best.gain_points <= 0:
      line += " No guided policy beats the student alone here."
    if always is not None and best.accuracy > always.accuracy:
      line += " It beats the teacher writing everything."
    out.append(line)
  steps = rows[rows.step_k.notna()].sort_values("step_k")
  if not steps.empty:
    gains = ", ".join(f"K={int(r.step_k)}: {points(r.gain_points)}" for r in steps.itertuples())
    out.append(f"- Gain over the student alone (points) when the teacher writes step K: {gains}.")
    out.append(_timing_sentence(steps))
  return [line for line in out if line]


def _timing_sentence(steps: pd.DataFrame) -> str:
  """Is step 1 the best time for the teacher to step in? Said plainly either way."""
  first = steps[steps.step_k == 1]
  later = steps[steps.step_k > 1]
  if first.empty or later.empty or first.gain_points.isna().all():
    return "" if not first.empty else "- No `step:1` rows, so the first-step effect is not measured here."
  f = first.iloc[0]
  top = later.sort_values("gain_points", ascending=False).iloc[0]
  k = int(top.step_k)
  if f.gain_points > top.gain_points:
    text = (
      f"- Step 1 is the best timing: {points(f.gain_points)} points vs at most "
      f"{points(top.gain_points)} for a later step (`step:{k}`)."
    )
  elif f.gain_points == top.gain_points:
    text = f"- Step 1 ties with `step:{k}` ({points(f.gain_points)} points)."
  else:
    text = (
      f"- Step 1 is NOT the best timing here: `step:{k}` gains {points(top.gain_points)} points "
      f"vs {points(f.gain_points)} for `step:1`."
    )
  overlap = not (f.gain_ci_low > top.gain_ci_high or top.gain_ci_low > f.gain_ci_high)
  text += (
    " Their 95% CIs overlap, so this sample does not separate them."
    if overlap
    else " Their 95% CIs do not overlap."
  )
  g = steps.gain_points.to_numpy(dtype=float)
  if len(g) > 2:
    text += (
      " Gains never rise as K grows."
      if np.all(np.diff(g) <= 0)
      else " Gains do not fall monotonically with K."
    )
  return text


def render_markdown(
  df: pd.DataFrame,
  summary: pd.DataFrame,
  plots: dict[str, str],
  source: str,
  timing: pd.DataFrame | None = None,
  rescue: pd.DataFrame | None = None,
) -> str:
  """The report text; `plots` maps a caption to an image path relative to report.md.

  `timing` (analysis.timing_differences) and `rescue` (analysis.earliest_rescue_distribution) are
  computed from `df` when not given.
  """
  if timing is None:
    timing = analysis.timing_differences(df)
  if rescue is None:
    rescue = analysis.earliest_rescue_distribution(analysis.counterfactuals(df))
  s = keyed(summary)
  parts = [
    "# Teacher guidance report",
    "",
    f"Generated from {len(df)} result rows in `{source}`. Accuracy is exact-match on the final "
    "number; gains are paired with the student-only (`never`) row of the same problem and seed, "
    "with 95% bootstrap CIs resampling problems.",
    "",
  ]

  sizes = analysis.dataset_sizes(df)
  parts += ["## Data", "", markdown_table(list(sizes.columns), sizes.itertuples(index=False)), ""]

  never = s[s.policy == "never"]
  parts += ["## Student-only accuracy", ""]
  if never.empty:
    parts += ["No `never` rows: gains, rescue and harm cannot be computed.", ""]
  else:
    parts += [
      markdown_table(
        ["task", "student", "teacher", "checkpoint", "n", "accuracy"],
        [
          [r.task, r.student, label(r.teacher), label(r.checkpoint), r.n, pct(r.accuracy)]
          for r in never.itertuples()
        ],
      ),
      "",
    ]

  parts += ["## Findings", ""]
  configs = s[s.policy != "never"][["task", "student", "teacher", "checkpoint"]].drop_duplicates()
  if configs.empty:
    parts += ["Only student-only rows: nothing to compare.", ""]
  for c in configs.itertuples(index=False):
    head = f"### {c.task} / student {c.student}"
    head += f" / teacher {c.teacher}" if c.teacher else ""
    head += f" / checkpoint {c.checkpoint}" if c.checkpoint else ""
    parts += [head, "", *_config_findings(s, c.task, c.student, c.teacher, c.checkpoint), ""]

  parts += ["## Plots", ""]
  parts += [f"![{caption}]({path})\n" for caption, path in plots.items()]

  if PLOT_CHECKPOINTS in plots.values():
    step1 = s[(s.step_k == 1) & (s.checkpoint != "")]
    if not step1.empty:
      parts += [
        "### First-step gain by checkpoint",
        "",
        markdown_table(
          ["task", "student", "teacher", "checkpoint", "student alone", "step:1", "gain (points)", "95% CI"],
          [
            [
              r.task,
              r.student,
              label(r.teacher),
              r.checkpoint,
              pct(r.baseline_accuracy),
              pct(r.accuracy),
              points(r.gain_points),
              ci(r.gain_ci_low, r.gain_ci_high),
            ]
            for r in step1.itertuples()
          ],
        ),
        "",
      ]

  parts += [
    "## Summary",
    "",
    markdown_table(
      [
        "task",
        "student",
        "teacher",
        "checkpoint",
        "policy",
        "n",
        "accuracy",
        "gain (points)",
        "95% CI",
        "relative",
        "teacher tokens",
        "switches",
        "leakage",
      ],
      [
        [
          r.task,
          r.student,
          label(r.teacher),
          label(r.checkpoint),
          f"`{r.policy}`",
          r.n,
          pct(r.accuracy),
          points(r.gain_points),
          ci(r.gain_ci_low, r.gain_ci_high),
          "n/a" if missing(r.gain_rel_pct) else f"{r.gain_rel_pct:+.0f}%",
          pct(r.teacher_fraction),
          f"{r.mean_switches:.2f}",
          pct(r.leakage_rate),
        ]
        for r in s.itertuples()
      ],
    ),
    "",
  ]

  guided = s[s.policy != "never"]
  parts += [
    "## Rescue and harm",
    "",
    "Rescue: the student alone was wrong and the guided run right; harm: the reverse.",
    "",
  ]
  parts += [
    markdown_table(
      ["task", "student", "teacher", "checkpoint", "policy", "paired", "rescue", "harm", "net"],
      [
        [
          r.task,
          r.student,
          label(r.teacher),
          label(r.checkpoint),
          f"`{r.policy}`",
          r.n_paired,
          r.rescue,
          r.harm,
          f"{int(r.rescue) - int(r.harm):+d}",
        ]
        for r in guided.itertuples()
      ],
    )
    if not guided.empty
    else "No guided rows.",
    "",
  ]

  parts += ["## Leakage", "", _leakage_text(df, s), ""]
  parts += ["## Timing without leakage", "", *_no_leak_section(s, keyed(timing))]
  parts += ["## Per-problem counterfactuals", "", *_counterfactual_section(keyed(rescue))]
  parts += ["## Few-shot answer copying", "", *_copy_section(s)]
  return "\n".join(parts)


def _leakage_text(df: pd.DataFrame, s: pd.DataFrame) -> str:
  """How often the teacher's own text already contains the gold answer (as a whole number)."""
  d = analysis.prepare(df)
  wrote = d[d.teacher_text.str.len() > 0]
  if wrote.empty:
    return "No row records any teacher text (`teacher_text`), so leakage is not measured."
  leaked = [analysis.answer_leaked(t, a) for t, a in zip(wrote.teacher_text, wrote.answer)]
  n_leak = int(np.sum(leaked))
  partial = wrote[wrote.policy != "always"]
  n_partial = int(
    np.sum([analysis.answer_leaked(t, a) for t, a in zip(partial.teacher_text, partial.answer)])
  )
  lines = [
    f"The gold answer appears as a number in the teacher's text in {n_leak} of {len(wrote)} rows "
    f"where the teacher wrote ({pct(n_leak / len(wrote))})."
  ]
  if len(partial):
    lines.append(
      f"Excluding `always` (where the teacher writes the final answer by design): "
      f"{n_partial} of {len(partial)} ({pct(n_partial / len(partial))}). "
      + (
        "Gains on these rows may partly be the teacher handing over the answer rather than a better start."
        if n_partial
        else "So the guided gains are not the teacher handing over the answer."
      )
    )
  flagged = s[(s.leakage_rate > 0) & (s.policy != "always")]
  if not flagged.empty:
    lines += [
      "",
      markdown_table(
        ["task", "student", "teacher", "checkpoint", "policy", "leakage rate"],
        [
          [r.task, r.student, label(r.teacher), label(r.checkpoint), f"`{r.policy}`", pct(r.leakage_rate)]
          for r in flagged.itertuples()
        ],
      ),
    ]
  return "\n".join(lines)


# --------------------------------------------------------------------------- leakage-free timing


NO_LEAK_INTRO = (
  "The teacher's step K cannot be the final computation on a problem whose gold solution has more "
  "than K steps (non-empty lines of the worked solution; GSM8K: the lines before `#### N`), so the "
  "no-leak columns repeat each timing policy's gain on those problems only (for `step:K,n=N` the "
  "teacher's last step K+N-1 counts). Gold steps are counted on the dataset's solution, not on the "
  "prompt style's lines. The differences compare `step:1` with each later `step:K` on the same "
  "(seed, problem) units: gain(step:1) - gain(step:K), > 0 when step 1 is the better timing, with "
  "95% CIs resampling problems."
)


def _winner(steps: pd.DataFrame, column: str) -> pd.Series | None:
  """The step:K row with the largest `column` (the earliest K on ties), None when all missing."""
  known = steps[steps[column].notna()]
  if known.empty:
    return None
  return known.sort_values([column, "step_k"], ascending=[False, True]).iloc[0]


def _winner_sentences(rows: pd.DataFrame) -> list[str]:
  """Which step:K gains most, on all problems and without leakage, said in words."""
  steps = rows[rows.step_k.notna()]
  if steps.empty:
    return []
  out = []
  raw = _winner(steps, "gain_points")
  if raw is not None:
    out.append(
      f"- With leakage possible (all problems): `{raw.policy}` gains most, {points(raw.gain_points)} points "
      f"(95% CI {ci(raw.gain_ci_low, raw.gain_ci_high)})."
    )
  clean = _winner(steps, "gain_no_leak_points")
  if clean is None:
    out.append("- Without leakage: not measured (no paired problem has more gold steps than K).")
  else:
    line = (
      f"- Without leakage (each `step:K` on problems with more than K gold steps): `{clean.policy}` gains "
      f"most, {points(clean.gain_no_leak_points)} points on {clean.n_no_leak} rows "
      f"(95% CI {ci(clean.gain_no_leak_ci_low, clean.gain_no_leak_ci_high)})."
    )
    if raw is not None:
      line += (
        " The same timing wins either way."
        if clean.policy == raw.policy
        else f" Leakage changes the winner (`{raw.policy}` on all problems)."
      )
    out.append(line)
  return out


def _difference_words(low: float, high: float, k: int) -> str:
  if missing(low) or missing(high):
    return "n/a"
  if low > 0:
    return "step 1 better"
  if high < 0:
    return f"step {k} better"
  return "not separated"


def _policies(ks: list[int]) -> str:
  return ", ".join(f"`step:{k}`" for k in ks)


def _difference_verdict(diffs: pd.DataFrame) -> str:
  """One sentence: does step 1 beat the later steps once leakage is ruled out?"""
  known = diffs[diffs.diff_no_leak_ci_low.notna() & diffs.diff_no_leak_ci_high.notna()]
  if known.empty:
    return ""
  better = [int(r.step_k) for r in known.itertuples() if r.diff_no_leak_ci_low > 0]
  worse = [int(r.step_k) for r in known.itertuples() if r.diff_no_leak_ci_high < 0]
  if len(better) == len(known):
    return (
      f"- Without leakage, step 1 beats every later step compared ({_policies(better)}): all 95% CIs above 0."
    )
  text = "- Without leakage, "
  text += f"step 1 beats {_policies(better)}" if better else "step 1 beats no later step clearly"
  if worse:
    text += f"; {_policies(worse)} beat{'s' if len(worse) == 1 else ''} step 1"
  rest = [int(r.step_k) for r in known.itertuples() if int(r.step_k) not in better + worse]
  if rest:
    text += f"; the sample does not separate step 1 from {_policies(rest)}"
  return text + "."


def _config_heading(task: str, student: str, teacher: str, checkpoint: str) -> str:
  head = f"### {task} / student {student}"
  head += f" / teacher {teacher}" if teacher else ""
  return head + (f" / checkpoint {checkpoint}" if checkpoint else "")


def _no_leak_section(s: pd.DataFrame, timing: pd.DataFrame) -> list[str]:
  """Per config: winners with and without leakage, the per-policy table, step 1 vs step K."""
  fixed = s[s.n_no_leak.notna() | (s.step_k.notna())]
  if fixed.empty:
    return ["No `step:K` or `hint:K` rows: timing is not swept here.", ""]
  if s.n_no_leak.isna().all():
    return [
      "No row records `gold_steps` (results written before it was recorded, or a dataset without "
      "worked solutions), so gains without leakage are not measured.",
      "",
    ]
  parts = [NO_LEAK_INTRO, ""]
  for c in fixed[CONFIG_COLUMNS].drop_duplicates().itertuples(index=False):
    rows = fixed[(fixed[CONFIG_COLUMNS] == pd.Series(c._asdict())).all(axis=1)]
    parts += [_config_heading(*c), "", *_winner_sentences(rows), ""]
    parts += [
      markdown_table(
        ["policy", "n", "gain (points)", "95% CI", "rows with > K gold steps", "accuracy", "gain", "95% CI"],
        [
          [
            f"`{r.policy}`",
            r.n,
            points(r.gain_points),
            ci(r.gain_ci_low, r.gain_ci_high),
            label(r.n_no_leak),
            pct(r.accuracy_no_leak),
            points(r.gain_no_leak_points),
            ci(r.gain_no_leak_ci_low, r.gain_no_leak_ci_high),
          ]
          for r in rows.itertuples()
        ],
      ),
      "",
    ]
    diffs = timing[(timing[CONFIG_COLUMNS] == pd.Series(c._asdict())).all(axis=1)]
    if diffs.empty:
      continue
    parts += [
      "Step 1 minus step K (difference of gains, paired over seed and problem):",
      "",
      markdown_table(
        [
          "K",
          "paired",
          "step:1 - step:K",
          "95% CI",
          "reading",
          "paired, > K gold steps",
          "step:1 - step:K",
          "95% CI",
          "reading",
        ],
        [
          [
            int(r.step_k),
            r.n_units,
            points(r.diff_points),
            ci(r.diff_ci_low, r.diff_ci_high),
            _difference_words(r.diff_ci_low, r.diff_ci_high, int(r.step_k)),
            label(r.n_units_no_leak),
            points(r.diff_no_leak_points),
            ci(r.diff_no_leak_ci_low, r.diff_no_leak_ci_high),
            _difference_words(r.diff_no_leak_ci_low, r.diff_no_leak_ci_high, int(r.step_k)),
          ]
          for r in diffs.itertuples()
        ],
      ),
      "",
    ]
    verdict = _difference_verdict(diffs)
    parts += [verdict, ""] if verdict else []
  return parts


# --------------------------------------------------------------------------- counterfactuals


def _counterfactual_section(dist: pd.DataFrame) -> list[str]:
  """The earliest-rescue distribution per config, as a table and in words."""
  if dist.empty:
    return ["No `step:K` rows paired with student-only rows: no per-problem counterfactuals.", ""]
  parts = [
    f"`{COUNTERFACTUALS}` has one row per (student, checkpoint, seed, problem) and one column per "
    "`step:K`: `rescue` (student alone wrong, teacher's step K right), `harm` (the reverse), `right` "
    "or `wrong` (unchanged), and the earliest rescuing K. Below: the student-alone failures by the "
    "earliest step whose guidance rescues them (none: no swept step does).",
    "",
  ]
  buckets = sorted(
    set(dist.earliest), key=lambda e: (e == analysis.NOT_RESCUED, int(e) if e.isdigit() else 0)
  )
  configs = dist[CONFIG_COLUMNS].drop_duplicates()
  table, words = [], []
  for c in configs.itertuples(index=False):
    g = dist[(dist[CONFIG_COLUMNS] == pd.Series(c._asdict())).all(axis=1)].set_index("earliest")
    n_failed = int(g.n_failed.iloc[0])
    cells = [
      f"{int(g.loc[b, 'count'])} ({pct(g.loc[b, 'share'], 0)})" if b in g.index else "-" for b in buckets
    ]
    table.append([c.task, c.student, label(c.teacher), label(c.checkpoint), n_failed, *cells])
    if n_failed:
      rescued = n_failed - int(g.loc[analysis.NOT_RESCUED, "count"])
      if "1" in g.index:
        first = int(g.loc["1", "count"])
        how = f"{first} first rescued at step 1, {rescued - first} only by a later step"
      else:
        how = f"{rescued} rescued by some swept step (no `step:1` rows)"
      who = c.student + (f" @ {c.checkpoint}" if c.checkpoint else "")
      words.append(f"- {who}: of {n_failed} failures, {how}, {n_failed - rescued} by no swept step.")
  header = ["task", "student", "teacher", "checkpoint", "failures"]
  header += [f"K={b}" if b.isdigit() else "none" for b in buckets]
  return [*parts, markdown_table(header, table), "", *words, ""]


# --------------------------------------------------------------------------- few-shot copying


def _copy_section(s: pd.DataFrame) -> list[str]:
  """How often predictions equal an exemplar's answer, against the gold answers' own rate."""
  measured = s[s.exemplar_copy_rate.notna()]
  if measured.empty:
    return [
      "No row records its prompt's exemplar answers (`exemplar_answers`: zero-shot prompts, or results "
      "written before it was recorded), so copying from the few-shot prompt is not measured.",
      "",
    ]
  parts = [
    "Copy rate: how often the prediction equals one of the prompt's exemplar answers; gold rate: how "
    "often the gold answer itself does, the level copying is judged against. A warning is raised at a "
    f"copy rate of {pct(COPY_WARN_RATE, 0)} or more that is at least {100 * COPY_WARN_MARGIN:.0f} points "
    "above the gold rate.",
    "",
    markdown_table(
      ["task", "student", "teacher", "checkpoint", "policy", "n", "copy rate", "gold rate"],
      [
        [
          r.task,
          r.student,
          label(r.teacher),
          label(r.checkpoint),
          f"`{r.policy}`",
          r.n,
          pct(r.exemplar_copy_rate),
          pct(r.gold_exemplar_rate),
        ]
        for r in measured.itertuples()
      ],
    ),
    "",
  ]
  flagged = measured[
    (measured.exemplar_copy_rate >= COPY_WARN_RATE)
    & (measured.exemplar_copy_rate - measured.gold_exemplar_rate >= COPY_WARN_MARGIN)
  ]
  for c in flagged[CONFIG_COLUMNS].drop_duplicates().itertuples(index=False):
    rows = flagged[(flagged[CONFIG_COLUMNS] == pd.Series(c._asdict())).all(axis=1)]
    who = c.student + (f" @ {c.checkpoint}" if c.checkpoint else "")
    rates = ", ".join(f"{pct(r.exemplar_copy_rate)} under `{r.policy}`" for r in rows.itertuples())
    parts.append(
      f"- **Warning**: {who} predicts one of its prompt's exemplar answers too often (share of rows: "
      f"{rates}), against "
      f"{pct(rows.gold_exemplar_rate.max())} for the gold answers: it likely copies from the few-shot "
      "prompt, so its accuracy partly measures the exemplars rather than the teacher's help."
    )
  if flagged.empty:
    parts.append(
      "No student copies exemplar answers clearly more often than the gold answers coincide with them."
    )
  return [*parts, ""]


# --------------------------------------------------------------------------- entry points


def write_report(output_dir: str | Path, df: pd.DataFrame | None = None) -> dict[str, Path]:
  """Write summary.csv, report.md and the plots into `output_dir`; returns name -> path.

  `df` defaults to every results*.jsonl in `output_dir` (see analysis.load_results). Keys:
  'summary', 'report', 'accuracy_vs_step', 'accuracy_vs_teacher_fraction'; when the rows carry more
  than one checkpoint label, 'accuracy_vs_step_by_checkpoint'; when step:K rows pair with never rows,
  'counterfactuals' (counterfactuals.csv) and 'earliest_rescue'.
  """
  output_dir = Path(output_dir)
  if df is None:
    df = analysis.load_results(output_dir)
  if len(df) == 0:
    raise FileNotFoundError(f"no result rows for {output_dir}")
  summary = analysis.summarize(df)
  paths: dict[str, Path] = {"summary": output_dir / "summary.csv"}
  atomic_write_text(paths["summary"], summary.to_csv(index=False))
  timing = analysis.timing_differences(df)
  counterfactual = analysis.counterfactuals(df)
  rescue = analysis.earliest_rescue_distribution(counterfactual)
  if len(counterfactual):
    paths["counterfactuals"] = output_dir / COUNTERFACTUALS
    atomic_write_text(paths["counterfactuals"], counterfactual.to_csv(index=False))

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


def main(argv: Sequence[str] | None = None) -> int:
  """Exit 0; a missing dir, no results or a corrupt results line: `error: ...` and exit 2 (SystemExit)."""
  parser = argparse.ArgumentParser(prog="python -m experiments.report", description=__doc__.splitlines()[0])
  parser.add_argument("output_dir", type=Path, help="directory holding results*.jsonl")
  args = parser.parse_args(argv)

  def body() -> dict[str, Path]:
    if not args.output_dir.is_dir():
      raise MissingFileError(f"{args.output_dir} is not a directory")
    return write_report(args.output_dir)

  for name, path in report_user_errors(body).items():
    print(f"{name}: {path}")
  return 0


if __name__ == "__main__":
  sys.exit(main())

"""report.md sections on timing: the gains without leakage with step 1 vs step K, and the
per-problem counterfactuals (the earliest step whose guidance rescues a student-alone failure).

Each `*_section` function returns the lines under its `## ` heading (markdown.render_markdown adds it).
"""

from __future__ import annotations

import pandas as pd

from experiments.report import analysis
from experiments.report.formatting import ci, label, markdown_table, paired_reading, pct, points
from experiments.report.outputs import CONFIG_COLUMNS, COUNTERFACTUALS

NO_LEAK_INTRO = (
  "A row is leak-free when the teacher's step K cannot be the final computation, its problem's gold "
  "solution having more than K steps (non-empty lines of the worked solution; GSM8K: the lines before "
  "`#### N`), AND the teacher's text does not state the gold answer (the Leakage section's rule). The "
  "no-leak columns repeat each timing policy's accuracy and gain on its leak-free rows paired with the "
  "student alone (for `step:K,n=N` the teacher's last step K+N-1 counts). Gold steps are counted on the "
  "dataset's solution, not on the prompt style's lines. Each K keeps a different set of problems (fewer "
  "as K grows), so the common-set table repeats the curve on one set for every K: the (seed, problem) "
  "units that ran every swept `step:K` and the student alone, whose gold solution has more steps than "
  "the largest K swept and none of whose `step:K` rows' teacher text states the gold answer. The "
  "differences compare `step:1` with each later `step:K` on the same (seed, problem) units: "
  "gain(step:1) - gain(step:K), > 0 when step 1 is the better timing, with 95% CIs resampling problems "
  "(without leakage: the units where both rows are leak-free)."
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
      f"- Without leakage (each `step:K` on its own leak-free rows): `{clean.policy}` gains "
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
  common = _winner(steps, "gain_no_leak_common_points")
  if common is not None:
    out.append(
      f"- On one common set ({common.n_no_leak_common} units with more than {common.no_leak_common_k} "
      f"gold steps and no leak in any `step:K` row): `{common.policy}` gains most, "
      f"{points(common.gain_no_leak_common_points)} points "
      f"(95% CI {ci(common.gain_no_leak_common_ci_low, common.gain_no_leak_common_ci_high)})."
    )
  return out


def _difference_words(low: float, high: float, k: int) -> str:
  return paired_reading(low, high, "step 1", f"step {k}")


def _common_table(steps: pd.DataFrame) -> list[str]:
  """The no-leak curve over K on one common set of units (timing.common_no_leak), when measured."""
  steps = steps[steps.no_leak_common_k.notna()]
  if steps.empty:
    return []
  k, n = int(steps.no_leak_common_k.iloc[0]), int(steps.n_no_leak_common.iloc[0])
  if n == 0:
    return [
      f"Common set: no (seed, problem) unit has more than {k} gold steps, every `step:K` run and no leak "
      "in any of its rows, so the curve on one set is not measured.",
      "",
    ]
  return [
    f"The curve on one common set: {n} (seed, problem) units with more than {k} gold steps, every "
    "`step:K` run and no leak in any of their rows:",
    "",
    markdown_table(
      ["policy", "units", "accuracy", "gain (points)", "95% CI"],
      [
        [
          f"`{r.policy}`",
          r.n_no_leak_common,
          pct(r.accuracy_no_leak_common),
          points(r.gain_no_leak_common_points),
          ci(r.gain_no_leak_common_ci_low, r.gain_no_leak_common_ci_high),
        ]
        for r in steps.itertuples()
      ],
    ),
    "",
  ]


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


def no_leak_section(s: pd.DataFrame, timing: pd.DataFrame) -> list[str]:
  """Per config: winners with and without leakage, the per-policy table, step 1 vs step K."""
  fixed = s[s.n_no_leak.notna() | (s.step_k.notna())]
  if fixed.empty:
    return ["No `step:K` or `hint:K` rows: timing is not swept here.", ""]
  if s.n_no_leak.isna().all():
    return [
      "No row records `gold_steps` together with its teacher text (results written before they were "
      "recorded, or a dataset without worked solutions), so gains without leakage are not measured.",
      "",
    ]
  parts = [NO_LEAK_INTRO, ""]
  for c in fixed[CONFIG_COLUMNS].drop_duplicates().itertuples(index=False):
    rows = fixed[(fixed[CONFIG_COLUMNS] == pd.Series(c._asdict())).all(axis=1)]
    parts += [_config_heading(*c), "", *_winner_sentences(rows), ""]
    parts += [
      markdown_table(
        ["policy", "n", "gain (points)", "95% CI", "leak-free rows", "accuracy", "gain", "95% CI"],
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
    parts += _common_table(rows[rows.step_k.notna()])
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
          "paired, leak-free",
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


def counterfactual_section(dist: pd.DataFrame) -> list[str]:
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

"""report.md sections on answers where they should not be: the teacher's text carrying the gold
answer (leakage) and predictions copying the few-shot exemplars' answers.

Both ask whether an accuracy partly measures something other than the teacher's help; the checks
themselves are in answer_checks. `leakage_text` is the Leakage section's paragraph (and its table),
`copy_section` the lines under the few-shot heading; markdown.render_markdown adds the headings.
"""

from __future__ import annotations

import pandas as pd

from decode.core.policy import TEACHER_ONLY
from experiments.report import analysis
from experiments.report.formatting import markdown_table, pct, policy_cells
from experiments.report.outputs import CONFIG_COLUMNS

# Warn about few-shot copying when predictions equal an exemplar's answer at least this often and
# at least this much more often than the gold answers do (fractions).
COPY_WARN_RATE = 0.30
COPY_WARN_MARGIN = 0.10


def leakage_text(df: pd.DataFrame, s: pd.DataFrame) -> str:
  """How often the teacher's own text already contains the gold answer (as a whole number)."""
  d = analysis.scored_rows(analysis.prepare(df))
  wrote = d[d.text_recorded & (d.teacher_text.str.len() > 0)]
  if wrote.empty:
    return "No row records any teacher text (`teacher_text`), so leakage is not measured."
  leaked = analysis.leaked_rows(wrote)  # the rule the no-leak columns use too
  n_leak = int(leaked.sum())
  n_partial = int(leaked[(wrote.policy != TEACHER_ONLY).to_numpy()].sum())
  partial = wrote[wrote.policy != TEACHER_ONLY]
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
  flagged = s[(s.leakage_rate > 0) & (s.policy != TEACHER_ONLY)]
  if not flagged.empty:
    lines += [
      "",
      markdown_table(
        ["task", "student", "teacher", "checkpoint", "policy", "leakage rate"],
        [[*policy_cells(r), pct(r.leakage_rate)] for r in flagged.itertuples()],
      ),
    ]
  return "\n".join(lines)


def copy_section(s: pd.DataFrame) -> list[str]:
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
          *policy_cells(r),
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

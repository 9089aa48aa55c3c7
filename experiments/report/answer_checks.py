"""Answers where they should not be: two checks on what a guided accuracy really measures.

Leakage: the teacher's own text already contains the gold answer (`answer_leaked`), so a gain may
be the teacher handing the answer over. `leaked_rows` applies it to a table (the leakage rate) and
`leak_free` adds the timing condition (the no-leak columns, step differences and common set): one
rule wherever the report says "leak". Copying: the student's prediction equals one of the few-shot
prompt's exemplar answers (`exemplar_rates`), judged against how often the gold answer itself does.
Both compare with the scoring rule (`experiments.tasks.answers`), so "the same answer" means exactly
what it means when a row is scored.
"""

from __future__ import annotations

import re
from typing import Any, Sequence

import numpy as np
import pandas as pd

from experiments.tasks.answers import answers_match, normalize_number, numbers_in


def answer_leaked(teacher_text: str | None, answer: str | None) -> bool:
  """Does the teacher's text contain the gold answer as a number that scoring would accept?

  The numbers in the text are read with the scoring grammar (`answers.numbers_in`) and compared
  with the scoring rule (`answers.answers_match`), so a number counts exactly when an answer
  written that way would be scored correct: "$1,000" holds 1000, "3/4" holds 0.75 (not 3 or 4),
  "\u22125" holds -5. Numbers are whole: "124" does not contain 24. A gold answer that is not a
  number falls back to a whole-token text match.
  """
  if not teacher_text or answer is None or str(answer).strip() == "":
    return False
  gold = str(answer).strip()
  if normalize_number(gold) is None:
    return re.search(rf"(?<![\w.]){re.escape(gold)}(?![\w])", teacher_text) is not None
  return any(answers_match(number, gold) for number in numbers_in(teacher_text))


def leaked_rows(d: pd.DataFrame) -> np.ndarray:
  """Per prepared row: its teacher text states the gold answer (`answer_leaked`); False where the row
  records no text (`text_recorded`), which callers treat as not measured, never as clean."""
  return np.array(
    [
      bool(rec) and answer_leaked(t, a)
      for t, a, rec in zip(d["teacher_text"], d["answer"], d["text_recorded"])
    ],
    dtype=bool,
  )


def leak_free(d: pd.DataFrame, last_step: int | np.ndarray | pd.Series) -> np.ndarray:
  """Per prepared row: the teacher's writing up to `last_step` cannot have handed over the answer.

  Both must hold: the gold solution has more than `last_step` steps (so the teacher's last step is not
  the final computation) AND the recorded teacher text does not state the gold answer (`leaked_rows`).
  A row with unknown gold steps or no recorded text is never leak-free.
  """
  longer = d["gold_steps"].to_numpy(dtype=float) > np.asarray(last_step, dtype=float)  # NaN: False
  return longer & d["text_recorded"].to_numpy(dtype=bool) & ~leaked_rows(d)


def _matches_any(value: Any, answers: Sequence[str]) -> bool:
  return any(answers_match(value, a) for a in answers)


def exemplar_rates(g: pd.DataFrame) -> tuple[float, float] | None:
  """(prediction copy rate, gold coincidence rate) over rows whose prompt had exemplars.

  Copy rate: the prediction equals one of the prompt's exemplar answers (the scoring rule). The gold
  rate is how often the gold answer itself equals one, the level copying has to be judged against.
  None (not measured) when no row records exemplar answers (zero-shot prompts, older results files).
  """
  shots = [(p, a, ex) for p, a, ex in zip(g["prediction"], g["answer"], g["exemplar_answers"]) if ex]
  if not shots:
    return None
  copied = [_matches_any(p, ex) for p, _, ex in shots]
  gold = [_matches_any(a, ex) for _, a, ex in shots]
  return (float(np.mean(copied)), float(np.mean(gold)))

"""analysis's answer checks (answer_checks.py): the teacher's text leaking the gold answer, read as
scoring reads numbers, and predictions copying the few-shot exemplars' answers."""

from __future__ import annotations

import math

import pandas as pd
import pytest
from analysis_rows import one, row

from experiments.report import analysis

# --------------------------------------------------------------------------- leakage


@pytest.mark.parametrize(
  "text,answer,leaked",
  [
    ("<<48/2=24>> so 24 cookies", "24", True),
    ("she has 124 apples", "24", False),
    ("he paid 2.45 dollars", "24", False),
    ("the price is 24.0 now", "24", True),
    ("about 1,024 people", "24", False),
    ("about 1,024 people", "1024", True),
    ("$24.", "24", True),
    ("x = -5 degrees", "-5", True),
    ("10-5=5", "-5", False),
    ("0.5 of the cake", "5", False),
    ("", "24", False),
    ("a 24 b", "24", True),
    ("the answer is many", "many", True),  # non-numeric gold: whole-token text match
    ("the answer is manymore", "many", False),
  ],
)
def test_answer_leaked_matches_whole_numbers(text: str, answer: str, leaked: bool) -> None:
  assert analysis.answer_leaked(text, answer) is leaked


# Where the old leakage grammar disagreed with scoring; now a number is in the text exactly when
# scoring would read the same value there (answers.numbers_in + answers.answers_match).
@pytest.mark.parametrize(
  "text,answer,leaked",
  [
    ("she paid 1000 dollars", "$1,000", True),  # was False: "$1,000" gold was matched as text
    ("she paid $1,000", "1000", True),
    ("a discount of 50 percent", "50%", True),  # was False: "50%" gold was matched as text
    ("a 50% discount", "50", True),
    ("she ate 3/4 of the pie", "0.75", True),  # was False: 3/4 was read as 3 and 4
    ("she ate 3/4 of the pie", "3", False),  # was True
    ("she ate 3/4 of the pie", "4", False),  # was True
    ("0.75 of the pie", "3/4", True),  # was False: "3/4" gold was matched as text
    ("it fell to \u22125 degrees", "-5", True),  # was False: the unicode minus was dropped
    ("it fell to \u22125 degrees", "5", False),  # was True
    ("costs 2.50 each", "2.5", True),
    ("costs 2.5 each", "2.50", True),
    ("sold 1,000, then 2,000", "1000", True),  # was False: "1,000," was read as 1 and 0
    (".5 of the cake", "0.5", True),  # was False: a leading "." hid the number
    ("<<48/2=24>>", "48", False),  # was True: scoring reads 48/2 as one number, 24
    ("a24b", "24", True),  # was False: scoring reads 24 in "a24b"
  ],
)
def test_answer_leaked_reads_numbers_as_scoring_does(text: str, answer: str, leaked: bool) -> None:
  assert analysis.answer_leaked(text, answer) is leaked


# --------------------------------------------------------------------------- few-shot copying


def test_exemplar_copy_rate_against_the_gold_rate() -> None:
  ex = ["5", "7"]
  gold = ["5", "8", "9", "10"]  # p0's gold answer is itself an exemplar answer: gold rate 1/4
  preds = {
    "never": ["5", "7", "7.0", None],  # p0 (right), p1 and p2 (copies, 7.0 == 7): 3/4
    "step:1": ["5", "8", "9", "10"],  # all right; only p0's equals an exemplar answer: 1/4
  }
  rows = [
    row(p, i, pred == gold[i], answer=gold[i], prediction=pred, exemplar_answers=ex, row_id=f"{p}{i}")
    for p, ps in preds.items()
    for i, pred in enumerate(ps)
  ]
  rows += [row("never", i, False, student="zero-shot", exemplar_answers=[], row_id=f"z{i}") for i in range(2)]
  rows += [row("never", i, False, student="old", row_id=f"o{i}") for i in range(2)]  # no exemplar_answers key
  s = analysis.summarize(pd.DataFrame(rows), n_boot=20)
  never = one(s, "never", student="student-small")
  assert never.exemplar_copy_rate == pytest.approx(0.75) and never.gold_exemplar_rate == pytest.approx(0.25)
  s1 = one(s, "step:1")
  assert s1.exemplar_copy_rate == pytest.approx(0.25) and s1.gold_exemplar_rate == pytest.approx(0.25)
  for student in ("zero-shot", "old"):
    r = one(s, "never", student=student)
    assert math.isnan(r.exemplar_copy_rate) and math.isnan(r.gold_exemplar_rate)


def test_exemplar_rates_not_measured_is_none() -> None:
  # No row records its prompt's exemplar answers: None (not measured), not a rate of NaN.
  g = analysis.prepare(pd.DataFrame([row("never", i, False, row_id=f"o{i}") for i in range(2)]))
  assert analysis.exemplar_rates(g) is None

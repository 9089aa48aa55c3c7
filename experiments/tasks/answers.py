"""Final-answer extraction and numeric normalisation for math word problems.

Accuracy in every experiment hinges on reading the number a model meant as its answer,
so the rules live in one place: prefer an explicit GSM8K "#### N" line, then
"The answer is N", then the last number in the text -- always after cutting the
completion at its first final-answer line, because small students keep generating
new questions after answering. The same grammar decides which numbers a text contains
(`numbers_in`), e.g. for the report's check whether the teacher's text already holds the answer.
"""

from __future__ import annotations

import math
import re
from decimal import Decimal, InvalidOperation
from fractions import Fraction

# A number as written in text: optional sign, optional "$", either comma-grouped thousands
# or plain digits, optional decimals, optional "/denominator" or trailing "%".
# The sign is only taken when it is not a binary minus ("5-3" is 5 and 3, not 5 and -3).
_NUMBER = (
  r"(?:(?<![\w)])[-\u2212])?\$?"
  r"(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?"
  r"(?:/\d+(?:\.\d+)?)?%?"
  r"|(?:(?<![\w)])[-\u2212])?\$?\.\d+%?"
)
NUMBER_PATTERN = re.compile(_NUMBER)
_FULL_NUMBER = re.compile(rf"\s*(?:{_NUMBER})\s*\.?\s*")

_HASH_ANSWER = re.compile(rf"####\s*({_NUMBER})")
_SAID_ANSWER = re.compile(rf"[Tt]he (?:final )?answer is\s*:?\s*({_NUMBER})")
# A line that states the final answer; everything after it is discarded.
_FINAL_LINE = re.compile(
  rf"^.*(?:####\s*(?:{_NUMBER})|[Tt]he (?:final )?answer is\s*:?\s*(?:{_NUMBER})).*$",
  re.MULTILINE,
)
# A student that forgot to answer often starts a new few-shot block instead.
_NEW_QUESTION = re.compile(r"\n\s*Question:")

# Significant digits kept when a fraction has no finite decimal form (1/3 -> 0.333333).
_REPEATING_DECIMAL_DIGITS = 6
ABS_TOLERANCE = 1e-4
REL_TOLERANCE = 1e-6


def _format_decimal(value: Decimal) -> str:
  """Plain (non-scientific) decimal string without trailing zeros; -0 becomes 0."""
  if value == 0:
    return "0"
  text = format(value.normalize(), "f")
  if "." in text:
    text = text.rstrip("0").rstrip(".")
  return text


def _fraction_to_decimal(fraction: Fraction) -> Decimal:
  """Exact decimal when the fraction terminates, else rounded to a few digits."""
  denominator = fraction.denominator
  for prime in (2, 5):
    while denominator % prime == 0:
      denominator //= prime
  if denominator == 1:
    return Decimal(fraction.numerator) / Decimal(fraction.denominator)
  rounded = round(fraction.numerator / fraction.denominator, _REPEATING_DECIMAL_DIGITS)
  return Decimal(repr(rounded))


def normalize_number(text: str | int | float) -> str | None:
  """Canonical string for a number written in text, or None when it is not one number.

  "$1,200.50" -> "1200.5", "7.0" -> "7", "3,000" -> "3000", "40%" -> "40",
  "1/2" -> "0.5", "-3" -> "-3". A single trailing sentence period is allowed ("7.").
  """
  if isinstance(text, bool):
    return None
  if isinstance(text, (int, float)):
    if isinstance(text, float) and not math.isfinite(text):
      return None
    return _format_decimal(Decimal(repr(text)))
  if not _FULL_NUMBER.fullmatch(text):
    return None
  cleaned = text.strip().rstrip(".").strip()
  cleaned = cleaned.replace("\u2212", "-").replace("$", "").replace(",", "").rstrip("%")
  try:
    if "/" in cleaned:
      numerator, denominator = cleaned.split("/")
      if Decimal(denominator) == 0:
        return None
      fraction = Fraction(numerator) / Fraction(denominator)
      return _format_decimal(_fraction_to_decimal(fraction))
    return _format_decimal(Decimal(cleaned))
  except (InvalidOperation, ValueError):
    return None


def numbers_in(text: str | None) -> list[str]:
  """Every number written in `text`, normalised, in order: the values scoring can read there.

  One grammar for the whole study (`NUMBER_PATTERN` + `normalize_number`), so "$1,000" -> "1000",
  "50%" -> "50", "3/4" -> "0.75" (one number, not 3 and 4), "\u22125" (U+2212 minus) -> "-5", "2.50" -> "2.5".
  Numbers are whole: "124" gives "124", never "24"; "5-3" gives "5" and "3" (a binary minus).
  """
  found = (normalize_number(candidate) for candidate in NUMBER_PATTERN.findall(text or ""))
  return [number for number in found if number is not None]


def strip_after_answer(completion: str) -> str:
  """Cut a completion after its first final-answer line ("#### N" / "The answer is N").

  Without an answer line, cut before a new "Question:" block the student started on
  its own, so the last-number fallback cannot read a number from an invented question.
  """
  final_line = _FINAL_LINE.search(completion)
  if final_line is not None:
    return completion[: final_line.end()]
  new_question = _NEW_QUESTION.search(completion)
  if new_question is not None:
    return completion[: new_question.start()]
  return completion


def extract_answer(completion: str) -> str | None:
  """The normalised final answer of a completion, or None when it states no number.

  Order of preference: "#### N", "The answer is N", the last number in the text
  (the last of `numbers_in`, after `strip_after_answer`).
  """
  text = strip_after_answer(completion)
  for pattern in (_HASH_ANSWER, _SAID_ANSWER):
    found = pattern.search(text)
    if found is not None:
      return normalize_number(found.group(1))
  numbers = numbers_in(text)
  return numbers[-1] if numbers else None


def answers_match(pred: str | None, gold: str | None) -> bool:
  """Numeric equality within a small tolerance; anything unparsable never matches."""
  if pred is None or gold is None:
    return False
  pred_norm, gold_norm = normalize_number(pred), normalize_number(gold)
  if pred_norm is None or gold_norm is None:
    return False
  return math.isclose(float(pred_norm), float(gold_norm), rel_tol=REL_TOLERANCE, abs_tol=ABS_TOLERANCE)


def score(completion: str, gold: str | None) -> tuple[str | None, bool]:
  """(prediction, correct): the study's one correctness rule, shared by sweeps and evaluation."""
  prediction = extract_answer(completion)
  return prediction, answers_match(prediction, gold)

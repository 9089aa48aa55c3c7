"""Final-answer extraction and exact numeric comparison for math word problems.

Accuracy in every experiment hinges on reading the number a model meant as its answer, the way
the field reads it, so the rules live in one place. A completion is cut after the line of its first
final-answer statement ("#### N", "The (final) answer is N", "Final answer: N", "Answer: N",
"\\boxed{N}"), or before an invented "Question:" block: small students keep generating new
questions with new answers, instruct models keep talking after the box. In the kept text, "#### N"
(lm-eval-harness's GSM8K strict-match) wins, then the first statement's number, then the last number
(flexible-extract). Answers are compared exactly ("18" == "18.0" == "$18", 2000001 != 2000000).
The same number grammar decides which numbers a text contains (`numbers_in`), e.g. for the report's
check whether the teacher's text already holds the answer.
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

# Where a final-answer statement starts (case-insensitive). The line-start "Answer:" comes first so that
# "#### Answer: 18" reads 18; "The final answer is" is caught by the "the ... answer is" alternative.
_PHRASE = re.compile(
  r"^[ \t>#*_-]*answer[ \t*_]*:"
  r"|(?P<hash>####)"
  r"|\bthe\s+(?:final\s+)?answer\s+is\b"
  r"|\bfinal\s+answer\b[ \t*_]*(?::|is\b)",
  re.IGNORECASE | re.MULTILINE,
)
# What may stand between a statement's phrase and its number: colon, bold/italic marks, "$" / "\(" /
# "\[" math delimiters, an escaped "\$", a "\textbf{" wrapper.
_LEAD = re.compile(r"(?:[\s:*_]|\\?\$|\\[(\[]|\\(?:textbf|mathbf)\s*\{)*")
_BOX_OPEN = re.compile(r"\\(?:boxed|fbox)\s*\{")
# "#### 1. Find the total": a markdown heading that numbers a step, not a GSM8K answer line.
_HEADING_AFTER_HASH = re.compile(r"[.):][ \t]*[A-Za-z]")
# "Answer: 5 + 3 = 8": the number opens a computation, so it is not the stated answer.
_ARITHMETIC_AFTER = re.compile(r"[ \t]*(?:[-+*/\u00d7\u00f7=^]|\\times|\\cdot|\\div)[ \t]*[\d$(.\\]")
# LaTeX inside a box, rewritten into the plain number grammar.
_LATEX_WORDS = re.compile(r"\\(?:text|textbf|textrm|mathrm|mathbf|mbox|operatorname)\s*\{([^{}]*)\}")
_LATEX_FRAC = re.compile(r"\\[dt]?frac\s*\{([^{}]*)\}\s*\{([^{}]*)\}")
_LATEX_THIN_SPACE_IN_NUMBER = re.compile(r"(?<=\d)(?:\\,|\{,\}|\\!)(?=\d{3})")
_LATEX_SPACE = re.compile(r"\\[,;:! ]|~")
_LAST_EQUALS = re.compile(r".*(?:=|\\approx)", re.DOTALL)
# A student that forgot to answer often starts a new few-shot block instead.
_NEW_QUESTION = re.compile(r"(?:\A|\n)\s*Question:")

# Decimal places kept when a fraction has no finite decimal form (1/3 -> 0.333333).
_REPEATING_DECIMAL_DIGITS = 6


def _format_decimal(value: Decimal) -> str:
  """Plain (non-scientific) decimal string without trailing zeros (normalize() drops them); -0 becomes 0."""
  if value == 0:
    return "0"
  return format(value.normalize(), "f")


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


def _closing_brace(text: str, start: int) -> int | None:
  """Index of the "}" closing a group opened just before `start`, or None when it never closes."""
  depth = 1
  for index in range(start, len(text)):
    if text[index] == "{":
      depth += 1
    elif text[index] == "}":
      depth -= 1
      if depth == 0:
        return index
  return None


def _boxed_value(content: str) -> str | None:
  """The number a box holds: "1,200", "\\$18", "18 \\text{ apples}", "x = 5", "\\frac{3}{4}" -> 0.75.

  LaTeX is rewritten into the plain grammar, then the first number after the last "=" is read, so
  units with digits ("18 \\text{ m}^2") and worked equations ("2 + 3 = 5") give the answer.
  """
  plain = content.replace("\\$", "$")  # a "\%" needs no rewrite: a number's "%" is dropped anyway
  plain = _LATEX_THIN_SPACE_IN_NUMBER.sub(",", plain)
  plain = _LATEX_WORDS.sub(r" \1 ", plain)
  plain = _LATEX_FRAC.sub(r"\1/\2", plain)
  plain = _LATEX_SPACE.sub(" ", plain)
  numbers = numbers_in(_LAST_EQUALS.sub("", plain))
  return numbers[0] if numbers else None


def _box_at(text: str, start: int) -> tuple[str, int] | None:
  """(value, end) of a "\\boxed{...}" starting at `start`, None when there is none or it holds no number."""
  opened = _BOX_OPEN.match(text, start)
  if opened is None:
    return None
  close = _closing_brace(text, opened.end())
  if close is None:
    return None
  value = _boxed_value(text[opened.end() : close])
  return None if value is None else (value, close + 1)


def _value_after(text: str, start: int) -> tuple[str, int] | None:
  """(value, end) of the number a statement phrase ending at `start` announces, boxed or written."""
  lead = _LEAD.match(text, start).end()
  boxed = _box_at(text, lead)
  if boxed is not None:
    return boxed
  number = NUMBER_PATTERN.match(text, lead)
  if number is None:
    return None
  value = normalize_number(number.group())
  return None if value is None else (value, number.end())


def _statements(text: str) -> list[tuple[int, int, str, bool]]:
  """Every final-answer statement as (start, end of its number, value, is "#### N"), by start.

  A statement is a phrase followed by a number ("#### N", "The (final) answer is N", "Final answer:
  N", "Answer: N" at a line start; bold, "$...$" and "\\(...\\)" allowed around it) or a
  "\\boxed{N}" anywhere. Not statements: a bold number alone (instruct models bold intermediate
  results), a said number that starts a computation ("Answer: 5 + 3 = 8"; "#### 5 + 3" still reads
  5, as strict-match does), a numbered markdown heading ("#### 1. Count the eggs").
  """
  found = []
  for phrase in _PHRASE.finditer(text):
    read = _value_after(text, phrase.end())
    if read is None:
      continue
    is_hash = phrase.group("hash") is not None
    # "#### N" reads N even before more arithmetic, as lm-eval-harness's strict-match does (its regex
    # takes the first "#### N"); a said answer that starts a computation is no statement.
    after = _HEADING_AFTER_HASH if is_hash else _ARITHMETIC_AFTER
    if after.match(text, read[1]):
      continue
    found.append((phrase.start(), read[1], read[0], is_hash))
  for opened in _BOX_OPEN.finditer(text):
    read = _box_at(text, opened.start())
    if read is not None:
      found.append((opened.start(), read[1], read[0], False))
  return sorted(found)


def _cut(completion: str) -> tuple[str, list[tuple[int, int, str, bool]]]:
  """The completion up to the end of its first statement's line, or before an invented "Question:".

  Whichever comes first: a base-model student answers, then writes "Question: ..." blocks with
  answers of their own; an instruct model may keep talking after its boxed answer.
  Also returns the statements inside the kept text.
  """
  statements = _statements(completion)
  end = len(completion)
  if statements:
    line_end = completion.find("\n", statements[0][1])
    end = len(completion) if line_end == -1 else line_end
  new_question = _NEW_QUESTION.search(completion)
  if new_question is not None:
    end = min(end, new_question.start())
  return completion[:end], [statement for statement in statements if statement[1] <= end]


def strip_after_answer(completion: str) -> str:
  """Cut a completion after the line of its first final-answer statement ("#### N", "The answer is
  N", "\\boxed{N}", ...), or before a new "Question:" block the student started, if that comes first.

  Nothing written after the first answer can change the prediction, so neither a later corrected
  answer nor a number in an invented follow-up question is read.
  """
  return _cut(completion)[0]


def extract_answer(completion: str) -> str | None:
  """The normalised final answer of a completion, or None when it states no number.

  Read from `strip_after_answer`'s text, in the order lm-eval-harness's GSM8K filters and math
  instruct models suggest: "#### N" (strict-match), then the first statement's number (boxed, said,
  bold inside the statement), then the last number (flexible-extract; the last of `numbers_in`).
  """
  text, statements = _cut(completion)
  for _, _, value, is_hash in statements:
    if is_hash:
      return value
  if statements:
    return statements[0][2]
  numbers = numbers_in(text)
  return numbers[-1] if numbers else None


def answers_match(pred: str | int | float | None, gold: str | int | float | None) -> bool:
  """Exact numeric equality of the normalised numbers ("18" == "18.0" == "$18"); unparsable never matches.

  No tolerance: a relative one merges distinct integers (2000001 vs 2000000) and an absolute one
  distinct decimals, and GSM8K-style answers are exact.
  """
  if pred is None or gold is None:
    return False
  pred_norm, gold_norm = normalize_number(pred), normalize_number(gold)
  if pred_norm is None or gold_norm is None:
    return False
  return Decimal(pred_norm) == Decimal(gold_norm)


def score(completion: str, gold: str | None) -> tuple[str | None, bool]:
  """(prediction, correct): the study's one correctness rule, shared by sweeps and evaluation."""
  prediction = extract_answer(completion)
  return prediction, answers_match(prediction, gold)

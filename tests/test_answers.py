"""Answer normalisation and extraction on the strings students actually produce."""

import pytest

from experiments.tasks.answers import (
  answers_match,
  extract_answer,
  normalize_number,
  numbers_in,
  strip_after_answer,
)


@pytest.mark.parametrize(
  "text, expected",
  [
    ("$1,200.50", "1200.5"),
    ("-3", "-3"),
    ("7.0", "7"),
    ("1/2", "0.5"),
    ("1/3", "0.333333"),
    ("3,000", "3000"),
    ("40%", "40"),
    ("7.", "7"),
    ("40%.", "40"),  # a percentage ending a sentence
    ("100", "100"),
    ("12.000", "12"),
    (" 12 ", "12"),
    ("0.50", "0.5"),
    ("$.5", "0.5"),
    ("\u22124", "-4"),
    ("-0.0", "0"),
    ("1,000,000", "1000000"),
    (8.0, "8"),
    (15, "15"),
    (0.1, "0.1"),
  ],
)
def test_normalize_number_accepts_written_numbers(text, expected):
  assert normalize_number(text) == expected


@pytest.mark.parametrize("text", ["abc", "", "1,2", "5-3", "1/0", "12 apples", "#### 4", True])
def test_normalize_number_rejects_non_numbers(text):
  assert normalize_number(text) is None


@pytest.mark.parametrize(
  "completion, expected",
  [
    ("The answer is 7.", "7"),
    ("#### 42", "42"),
    ("She pays $1,200.50 in total.\n#### $1,200.50", "1200.5"),
    ("He is left with -3 dollars.", "-3"),
    ("So 5-3=2 apples remain.", "2"),
    ("It costs 3.5. Then she is done.", "3.5"),
    ("The final answer is: 12", "12"),
    ("Half of it is 1/2", "0.5"),
    ("no number at all", None),
    # "####" wins over a later "The answer is" and over later numbers.
    ("Ava has 12 + 5 = <<12+5=17>>17 apples.\n#### 17\nThe answer is 3", "17"),
    # "The answer is" wins over the last number when there is no "####".
    ("The answer is 9.\nThen 10 more.", "9"),
  ],
)
def test_extract_answer(completion, expected):
  assert extract_answer(completion) == expected


def test_extract_answer_ignores_questions_the_student_invents_after_answering():
  completion = (
    "Ava has 12 + 5 = <<12+5=17>>17 apples.\n#### 17\n\n"
    "Question: Ben has 3 apples. How many?\nAnswer: Ben has 3 apples.\n#### 3"
  )
  assert extract_answer(completion) == "17"


def test_extract_answer_without_answer_line_stops_at_invented_question():
  completion = "Ava has 12 + 5 = 17 apples.\n\nQuestion: Ben has 3 apples and 4 pears."
  assert extract_answer(completion) == "17"


def test_strip_after_answer_keeps_the_answer_line_and_drops_the_rest():
  completion = "Step one.\n#### 42\n\nQuestion: more text 99"
  assert strip_after_answer(completion) == "Step one.\n#### 42"
  assert strip_after_answer("The answer is 7. Next question: 8") == "The answer is 7. Next question: 8"
  assert strip_after_answer("a\nThe answer is 7.\nb 8") == "a\nThe answer is 7."
  assert strip_after_answer("no answer yet 5") == "no answer yet 5"


def test_strip_after_answer_is_idempotent():
  completion = "x = 3\n#### 3\nQuestion: y"
  once = strip_after_answer(completion)
  assert strip_after_answer(once) == once


@pytest.mark.parametrize(
  "pred, gold, expected",
  [
    ("7", "7.0", True),
    ("1200.5", "$1,200.50", True),
    ("0.333333", "1/3", True),
    ("7", "8", False),
    ("-3", "3", False),
    (None, "1", False),
    ("1", None, False),
    ("abc", "1", False),
    ("1000000", "1000000.00001", False),  # was True under the old 1e-6 relative tolerance
  ],
)
def test_answers_match(pred, gold, expected):
  assert answers_match(pred, gold) is expected


# Each pair is within a tolerance someone might add (relative 1e-6, absolute 1e-3, float equality).
@pytest.mark.parametrize(
  "pred, gold",
  [
    ("2000001", "2000000"),
    ("1000.001", "1000.0"),
    ("18.0001", "18"),
    ("0.3333", "1/3"),
    ("123456789012345679", "123456789012345678"),  # equal as floats
  ],
)
def test_answers_match_has_no_tolerance(pred, gold):
  assert not answers_match(pred, gold)
  assert not answers_match(gold, pred)


@pytest.mark.parametrize(
  "pred, gold",
  [
    ("18", "18.0"),
    ("18", "18.00"),
    ("18", "$18"),
    ("1200", "1,200"),
    ("0.5", "1/2"),
    ("-3", "\u22123"),
    ("123456789012345678", "123,456,789,012,345,678"),
    (18.0, "18"),
  ],
)
def test_answers_match_equal_values_written_differently(pred, gold):
  assert answers_match(pred, gold)
  assert answers_match(gold, pred)


def test_first_statement_wins_over_a_later_hash_line():
  completion = "Ava has 17 apples, so the answer is 17.\nThen Ben found 3 more.\n#### 3"
  assert strip_after_answer(completion) == "Ava has 17 apples, so the answer is 17."
  assert extract_answer(completion) == "17"


def test_first_boxed_answer_wins_over_a_later_one():
  completion = "So she makes \\(\\boxed{18}\\) dollars.\n\nWait, with the muffins: \\(\\boxed{22}\\)."
  assert strip_after_answer(completion) == "So she makes \\(\\boxed{18}\\) dollars."
  assert extract_answer(completion) == "18"


def test_statement_inside_an_invented_question_is_not_read():
  completion = "Ava has 12 + 5 = 17 apples.\n\nQuestion: Ben has 3 apples.\nAnswer: Ben has 3.\n#### 3"
  assert strip_after_answer(completion) == "Ava has 12 + 5 = 17 apples."
  assert extract_answer(completion) == "17"


# The cases where the report's old leakage grammar read numbers differently from scoring.
@pytest.mark.parametrize(
  "text, expected",
  [
    ("She paid $1,000 for it.", ["1000"]),
    ("a 50% discount", ["50"]),
    ("she ate 3/4 of the pie", ["0.75"]),  # one number, not 3 and 4
    ("it fell to \u22125 degrees", ["-5"]),
    ("costs 2.50 each", ["2.5"]),
    ("sold 1,000, then 2,000.", ["1000", "2000"]),
    (".5 of the cake", ["0.5"]),
    ("<<48/2=24>> so 24 cookies", ["24", "24", "24"]),  # 48/2 is read as the fraction 24
  ],
)
def test_numbers_in_reads_the_scoring_grammar(text, expected):
  assert numbers_in(text) == expected


@pytest.mark.parametrize(
  "text, expected",
  [
    ("she has 124 apples", ["124"]),  # whole numbers: never "24"
    ("about 1,024 people", ["1024"]),
    ("10-5=5", ["10", "5", "5"]),  # binary minus: no -5
    ("x = -5 and 2.45 or 24.0", ["-5", "2.45", "24"]),
    ("1/0 of it", []),  # a zero denominator is no number
    ("no numbers here", []),
    ("", []),
    (None, []),
  ],
)
def test_numbers_in_whole_numbers_in_order(text, expected):
  assert numbers_in(text) == expected


@pytest.mark.parametrize(
  "text", ["She paid $1,000 for it.", "a 50% discount", "ate 3/4", "to \u22125 degrees", "2.50", "7 - 2 = 5"]
)
def test_extract_answer_falls_back_to_the_last_of_numbers_in(text):
  assert extract_answer(text) == numbers_in(text)[-1]


def test_a_terminating_fraction_is_exact_past_the_repeating_digits():
  # 1/78125 = 1/5^7 = 0.0000128 exactly (7 places); only a repeating decimal is rounded to 6 places.
  assert normalize_number("1/78125") == "0.0000128"
  assert normalize_number("3/160") == "0.01875"  # 160 = 2^5 * 5
  assert normalize_number("1/7") == "0.142857"


# Boxes as math instruct models write them, each row hand-read; a sign right after LaTeX markup is the
# case a sloppy rewrite of the markup loses ("-\$5" read as 5).
@pytest.mark.parametrize(
  "completion, expected",
  [
    (r"The change is \boxed{-\$5}.", "-5"),
    (r"The change is \boxed{\text{loss: }-5}.", "-5"),
    (r"The slope is \boxed{-\frac{3}{4}}.", "-0.75"),
    (r"The balance is \boxed{\,-12}.", "-12"),
    (r"Solving, \boxed{x=-5}.", "-5"),
    (r"So \boxed{40\%} of them.", "40"),
    # A box that holds no number is no statement: the last number is read.
    (r"The box \boxed{x} stays empty; the count is 7", "7"),
    # The first statement's line ends the text: a "####" on the next line is not read.
    ("\\boxed{5}\n#### 7", "5"),
    # "#### \boxed{N}" is a "####" answer: it wins over an earlier box on its line.
    (r"First \boxed{3}, in the end #### \boxed{18}", "18"),
    # A said "answer" that is no number (a zero denominator) is no statement either, nor is one that
    # starts a computation; a later statement still counts.
    ("The answer is 1/0. Counting again: 7", "7"),
    ("The answer is below.\nThe answer is 8.\nThen 10 more.", "8"),
    ("Answer: 5 + 3 = 8\nThe answer is 8.\nThen 10 more.", "8"),
    ("She scored 40%.", "40"),
  ],
)
def test_boxed_answers_as_written(completion, expected):
  assert extract_answer(completion) == expected

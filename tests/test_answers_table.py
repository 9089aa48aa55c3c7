"""A hand-labelled table of completions in the styles real models write, read as the field reads them.

Each row is what a person reading the completion would call its prediction (lm-eval-harness's GSM8K
strict-match / flexible-extract, the boxed-answer convention of math instruct models, the first
final-answer statement winning), so a change to extraction that disagrees with a reader fails here.
"""

import pytest

from experiments.tasks.answers import extract_answer, score, strip_after_answer


def row(name, completion, prediction, gold=None, correct=None):
  return pytest.param(completion, prediction, gold, correct, id=name)


# Base models continuing a GSM8K few-shot prompt after "Answer:".
_BASE_FEW_SHOT = [
  row(
    "gsm8k-base-then-invented-question",
    " Natalia sold 48/2 = <<48/2=24>>24 clips in May.\n"
    "Natalia sold 48+24 = <<48+24=72>>72 clips altogether in April and May.\n#### 72\n\n"
    "Question: Weng earns $12 an hour for babysitting. Yesterday, she just did 50 minutes of "
    "babysitting. How much did she earn?\nAnswer: Weng earns 12/60 = $<<12/60=0.2>>0.2 per minute.\n"
    "Working 50 minutes, she earned 0.2 x 50 = $<<0.2*50=10>>10.\n#### 10",
    "72",
    "72",
    True,
  ),
  row(
    "gsm8k-base-wrong-answer-gold-in-invented-block",
    " Natalia sold 48/2 = 24 clips in May.\nNatalia sold 48+22 = 70 clips.\n#### 70\n\n"
    "Question: Natalia sold 72 clips. How many?\nAnswer: 72\n#### 72",
    "70",
    "72",
    False,
  ),
  row("gsm8k-base-commas", " She earns 100 * 12 = <<100*12=1200>>1200.\n#### 1,200", "1200", "1200", True),
  row("gsm8k-base-dollar", " 9 * 2 = $<<9*2=18>>18\n#### $18", "18", "18", True),
  row("gsm8k-base-no-space", " 16 - 3 - 4 = 9 eggs, 9 * 2 = 18\n####18", "18", "18", True),
  row("gsm8k-base-negative", " The temperature fell 4 degrees below zero.\n#### -4", "-4", "-4", True),
  row("gsm8k-base-decimal", " Each pen costs $2.50, so 3 pens cost $7.50.\n#### 7.50", "7.5", "7.5", True),
  row(
    "gsm8k-base-near-miss", " 1,000,000 + 1 = 1,000,001 people.\n#### 1,000,001", "1000001", "1000000", False
  ),
  row(
    "gsm8k-base-no-answer-line-then-question",
    " She has 5 + 3 = <<5+3=8>>8 apples.\n\nQuestion: Tom has 12 apples and gives away 4. "
    "How many are left?\nAnswer:",
    "8",
    "8",
    True,
  ),
  row(
    "gsm8k-base-number-only-in-invented-question",
    " Let me think about it.\n\nQuestion: A farmer has 40 cows and buys 12 more.\nAnswer: 40 + 12 = 52\n#### 52",
    None,
    "52",
    False,
  ),
  row(
    "gsm8k-base-truncated-at-max-tokens",
    " Janet's ducks lay 16 eggs per day. She eats 3 for breakfast, so 16 - 3 = <<16-3=13>>13 eggs",
    "13",
    "18",
    False,
  ),
  row("no-number-at-all", " I am not sure how to solve this problem.", None, "18", False),
  row("empty-completion", "", None, "18", False),
  # strict-match (lm-eval-harness) reads the first "#### N", whatever follows it on the line
  row("hash-starts-a-computation", " The sum is\n#### 5 + 3 = 8", "5"),
  row("hash-then-a-second-hash", " #### 12 * 2124\nQuestion: x\n#### 7", "12", "12", True),
]

# Chain-of-thought exemplars ending "The answer is N." (Wei et al.; lm-eval's gsm8k-cot).
_ANSWER_IS = [
  row(
    "cot-answer-is-then-invented-qa",
    " There are 15 trees originally. Then there were 21 trees after some more were planted. "
    "So there must have been 21 - 15 = 6. The answer is 6.\n\n"
    "Q: If there are 3 cars in the parking lot and 2 more cars arrive, how many cars are in the "
    "parking lot?\nA: There are originally 3 cars. 2 more cars arrive. 3 + 2 = 5. The answer is 5.",
    "6",
    "6",
    True,
  ),
  row(
    "cot-answer-is-dollars-commas", " 12 months * $100 = $1,200. The answer is $1,200.", "1200", "1200", True
  ),
  row("cot-answer-is-units", " 9 * 2 = 18. So the answer is 18 apples.", "18", "18", True),
  row("cot-answer-is-colon", " 6 * 7 = 42, so the answer is: 42", "42", "42", True),
  row("cot-answer-is-unicode-minus", " 3 - 10 = \u22127. The answer is \u22127.", "-7", "-7", True),
  row("cot-answer-is-fraction", " She ate 3 of 4 slices. The answer is 3/4.", "0.75", "0.75", True),
  row("cot-answer-is-percent", " 10 of 40 is 25%. The answer is 25%.", "25", "25", True),
  row(
    "cot-wrong-then-corrected-after-statement",
    " 5 * 4 = 20, so the answer is 20.\nWait, she gave away 2, so 20 - 2 = 18. The answer is 18.",
    "20",
    "18",
    False,
  ),
  row(
    "cot-answer-is-without-number",
    " 16 - 3 - 4 = 9 and 9 * 2 = 18. The answer is that she makes 18 dollars a day.",
    "18",
    "18",
    True,
  ),
  row(
    "cot-statement-then-numbers-after",
    " The answer is 18.\nTo check: 9 * 2 = 18 and 16 - 7 = 9, and next week 25.",
    "18",
    "18",
    True,
  ),
]

# Llama / Qwen / Minerva-style instruct answers with \boxed{}.
_BOXED = [
  row(
    "llama3-final-answer-boxed",
    "## Step 1: Eggs left to sell\nJanet's ducks lay 16 eggs; she uses 3 + 4 = 7, so 16 - 7 = 9 remain.\n\n"
    "## Step 2: Earnings\nShe sells 9 eggs at $2 each: 9 * 2 = 18.\n\n"
    "The final answer is: $\\boxed{18}$",
    "18",
    "18",
    True,
  ),
  row(
    "qwen-inline-boxed-then-text",
    "To find Janet's earnings we follow these steps:\n\n1. **Eggs left:**\n   \\[\n   16 - 3 - 4 = 9\n   \\]\n\n"
    "2. **Earnings:**\n   \\[\n   9 \\times 2 = 18\n   \\]\n\n"
    "Therefore, Janet makes \\(\\boxed{18}\\) dollars every day at the farmers' market.",
    "18",
    "18",
    True,
  ),
  row(
    "llama3-boxed-then-a-note",
    "9 * 2 = 18\n\nThe final answer is $\\boxed{18}$.\n\nNote: this assumes all 9 eggs sell; selling 7 gives 14.",
    "18",
    "18",
    True,
  ),
  row(
    "qwen-display-boxed",
    "The total number of clips is 48 + 24 = 72.\n\nThus, the answer is:\n\\[\n\\boxed{72}\n\\]",
    "72",
    "72",
    True,
  ),
  row(
    "minerva-final-answer",
    "She sells 9 eggs for $2 each.\nFinal Answer: The final answer is $18$. I hope it is correct.",
    "18",
    "18",
    True,
  ),
  row("boxed-commas", "So she earns \\boxed{1,200} dollars a year.", "1200", "1200", True),
  row("boxed-latex-commas", "The total is $\\boxed{1{,}200}$.", "1200", "1200", True),
  row("boxed-escaped-dollar", "Janet makes $\\boxed{\\$18}$ per day.", "18", "18", True),
  row("boxed-text-unit", "\\[\n\\boxed{18 \\text{ apples}}\n\\]", "18", "18", True),
  row("boxed-unit-with-exponent", "The area is \\(\\boxed{18\\text{ m}^2}\\).", "18", "18", True),
  row("boxed-frac", "She ate \\(\\boxed{\\frac{3}{4}}\\) of the pie.", "0.75", "0.75", True),
  row("boxed-negative", "The change is \\(\\boxed{-12}\\) degrees.", "-12", "-12", True),
  row("boxed-equation", "Solving gives \\(\\boxed{x = 5}\\).", "5", "5", True),
  row("boxed-decimal-trailing-zeros", "Each costs \\(\\boxed{2.50}\\) dollars.", "2.5", "2.5", True),
  row(
    "boxed-then-second-boxed",
    "So the answer is \\(\\boxed{18}\\).\n\nHowever, if we also count the 4 muffins, she would have "
    "\\(\\boxed{22}\\).",
    "18",
    "22",
    False,
  ),
  row(
    "markdown-numbered-headings-are-not-hash-answers",
    "#### 1. Count the eggs\n16 - 3 - 4 = 9\n#### 2. Sell them\n9 * 2 = 18\n\n\\(\\boxed{18}\\)",
    "18",
    "18",
    True,
  ),
  row(
    "instruct-follows-hash-instruction",
    "Eggs left: 16 - 3 - 4 = 9\nEarnings: 9 * 2 = 18\n#### 18\n\nI hope this helps! Let me know if you need 2 more.",
    "18",
    "18",
    True,
  ),
]

# Bold answers and "Final answer:" / "Answer:" lines.
_BOLD_AND_LABELS = [
  row("bold-in-answer-is", "9 * 2 = 18.\n\nThe answer is **18**.", "18", "18", True),
  row("bold-final-answer-label", "9 eggs at $2 each.\n\n**Final Answer:** 18", "18", "18", True),
  row("bold-answer-line-dollar", "Janet sells 9 eggs.\n\n**Answer: $18**", "18", "18", True),
  row(
    "bold-label-and-bold-value-unit",
    "**Final Answer**: **18 apples**\n\nThat is 3 per day.",
    "18",
    "18",
    True,
  ),
  row(
    "bold-answer-is-then-more-text",
    "9 * 2 = 18.\nThe answer is **18**.\n\nIf she also sold the 4 muffin eggs, she would make 26 dollars.",
    "18",
    "18",
    True,
  ),
  row("bold-answer-is-dollars-cents", "The answer is **$1,200.50**.", "1200.5", "1200.5", True),
  row(
    "bold-intermediate-then-statement",
    "She sells **9** eggs a day.\nThe answer is 18.",
    "18",
    "18",
    True,
  ),
  row(
    "bold-intermediate-is-not-a-statement",
    "She sells **9** eggs a day at $2 each, making 18 dollars.",
    "18",
    "18",
    True,
  ),
  row("final-answer-colon", "16 - 3 - 4 = 9\n9 * 2 = 18\nFinal answer: 18", "18", "18", True),
  row("final-answer-boxed", "9 * 2 = 18\nFinal answer: \\boxed{42}", "42", "18", False),
  row(
    "answer-line-start",
    "She has 9 eggs left.\nAnswer: 18\nExplanation: 9 * 2 = 18, plus 0.",
    "18",
    "18",
    True,
  ),
  row("answer-label-then-words", "**Answer:** Janet makes $18 every day.", "18", "18", True),
  row("answer-label-starts-computation", "Answer: 5 + 3 = 8", "8", "8", True),
  row(
    "answer-mid-line-is-not-a-label",
    "The question asks for the answer: 16 - 3 - 4 = 9 eggs, so 18 dollars",
    "18",
    "18",
    True,
  ),
]

TABLE = _BASE_FEW_SHOT + _ANSWER_IS + _BOXED + _BOLD_AND_LABELS


def test_table_is_large_enough():
  assert len(TABLE) >= 40


@pytest.mark.parametrize("completion, prediction, gold, correct", TABLE)
def test_prediction_is_what_a_reader_calls_the_answer(completion, prediction, gold, correct):
  assert extract_answer(completion) == prediction
  if gold is not None:
    assert score(completion, gold) == (prediction, correct)


@pytest.mark.parametrize("completion, prediction, gold, correct", TABLE)
def test_prediction_is_read_from_the_cut_text_only(completion, prediction, gold, correct):
  """The sweep reads `extract_answer(strip_after_answer(...))`: cutting twice changes nothing."""
  cut = strip_after_answer(completion)
  assert completion.startswith(cut)
  assert strip_after_answer(cut) == cut
  assert extract_answer(cut) == prediction

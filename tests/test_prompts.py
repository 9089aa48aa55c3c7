"""Prompt styles, leak-free exemplar selection, and the chat-template path."""

import dataclasses

import pytest
from tokenizers import Tokenizer, models
from transformers import PreTrainedTokenizerFast

from experiments.tasks.answers import extract_answer
from experiments.tasks.datasets import Problem, load_gsm8k
from experiments.tasks.prompts import (
  QUESTCOT_OPENER,
  NotEnoughExemplarsError,
  PromptError,
  build_prompt,
  exemplar_answers,
  format_solution,
  gold_step_count,
  select_exemplars,
  strip_annotations,
  subquestion_for_step,
)
from experiments.tasks.synthetic import SyntheticConfig, generate_problems


def make_problem(index, split="train", rationale=True):
  a, b = 10 + index, 3 + index
  return Problem(
    problem_id=f"toy/{split}/{index}",
    question=f"Ava has {a} apples. Ava buys {b} more apples. How many apples? ({split})",
    answer=str(a + b),
    rationale=f"Ava has {a} + {b} = <<{a}+{b}={a + b}>>{a + b} apples." if rationale else None,
    source="toy",
  )


TRAIN = [make_problem(i) for i in range(6)]
TEST = make_problem(0, split="test")


def test_cot_prompt_layout():
  prompt = build_prompt(TEST, "cot", TRAIN[:2])
  blocks = prompt.split("\n\n")
  assert len(blocks) == 3
  assert blocks[0] == (
    f"Question: {TRAIN[0].question}\nAnswer: Ava has 10 + 3 = <<10+3=13>>13 apples.\n#### 13"
  )
  assert blocks[2] == f"Question: {TEST.question}\nAnswer:"
  assert prompt.endswith("Answer:")


def test_every_exemplar_solution_ends_with_its_answer_line():
  for style in ("cot", "subques", "questcot", "chat"):
    solution = format_solution(TRAIN[1], style)
    assert solution.splitlines()[-1] == "#### 15"
    assert extract_answer(solution) == "15"


def test_subques_puts_a_subquestion_line_before_every_step():
  problem = Problem(
    "toy/train/9",
    "q",
    "72",
    "Natalia sold 48/2 = <<48/2=24>>24 clips in May.\nShe sold 48+24 = <<48+24=72>>72 clips.\nShe is happy.",
    "toy",
  )
  assert format_solution(problem, "subques").splitlines() == [
    "Q: What is 48/2?",
    "Natalia sold 48/2 = <<48/2=24>>24 clips in May.",
    "Q: What is 48+24?",
    "She sold 48+24 = <<48+24=72>>72 clips.",
    "Q: What else do we know?",
    "She is happy.",
    "#### 72",
  ]
  prompt = build_prompt(TEST, "subques", [problem])
  assert prompt.startswith("Question: q\nAnswer: Q: What is 48/2?\nNatalia sold")


def test_subquestion_with_several_annotations():
  step = "He pays 2*3 = <<2*3=6>>6 and 4+1 = <<4+1=5>>5 and 1-1=<<1-1=0>>0."
  assert subquestion_for_step(step) == "Q: What are 2*3, 4+1 and 1-1?"


def test_questcot_first_line_asks_how_to_start():
  lines = format_solution(TRAIN[0], "questcot").splitlines()
  assert lines[0] == f"{QUESTCOT_OPENER} What is 10+3?"
  assert lines[1:] == ["Ava has 10 + 3 = <<10+3=13>>13 apples.", "#### 13"]
  prompt = build_prompt(TEST, "questcot", TRAIN[:1])
  assert f"Answer: {QUESTCOT_OPENER} What is 10+3?\n" in prompt
  assert prompt.endswith(f"Question: {TEST.question}\nAnswer:")


def test_zero_shot_has_instruction_and_no_exemplars():
  prompt = build_prompt(TEST, "zero_shot", [])
  assert prompt.endswith(f"Question: {TEST.question}\nAnswer:")
  assert "####" in prompt.split("\n\n")[0]
  with pytest.raises(PromptError, match="takes no exemplars"):
    build_prompt(TEST, "zero_shot", TRAIN[:1])


def test_annotations_can_be_stripped():
  assert strip_annotations("48/2 = <<48/2=24>>24 clips") == "48/2 = 24 clips"
  prompt = build_prompt(TEST, "cot", TRAIN[:1], keep_annotations=False)
  assert "<<" not in prompt and "Ava has 10 + 3 = 13 apples." in prompt


def test_unknown_style_and_missing_rationale_are_errors():
  with pytest.raises(PromptError, match="unknown prompt style 'fewshot'"):
    build_prompt(TEST, "fewshot", TRAIN[:1])
  with pytest.raises(PromptError, match="toy/train/0 has no rationale"):
    build_prompt(TEST, "cot", [make_problem(0, rationale=False)])


def test_evaluated_problem_can_never_be_its_own_exemplar():
  with pytest.raises(PromptError, match="is the evaluated problem"):
    build_prompt(TRAIN[0], "cot", TRAIN[:2])
  same_question = Problem("other/x/1", TEST.question, TEST.answer, "x = 1", "other")
  with pytest.raises(PromptError, match="is the evaluated problem"):
    build_prompt(TEST, "cot", [same_question])


def test_select_exemplars_excludes_evaluated_problems_and_is_deterministic():
  evaluated = TRAIN[:3]
  chosen = select_exemplars(TRAIN, 3, [p.problem_id for p in evaluated], seed=0)
  assert {p.problem_id for p in chosen} == {p.problem_id for p in TRAIN[3:]}
  assert select_exemplars(TRAIN, 2, [], seed=5) == select_exemplars(TRAIN[::-1], 2, [], seed=5)
  seeds_differ = {tuple(p.problem_id for p in select_exemplars(TRAIN, 2, [], s)) for s in range(8)}
  assert len(seeds_differ) > 1


def test_select_exemplars_refuses_to_force_an_overlap():
  without_rationale = [make_problem(i + 10, rationale=False) for i in range(5)]
  with pytest.raises(NotEnoughExemplarsError, match="need 4 exemplars but only 3"):
    select_exemplars(TRAIN + without_rationale, 4, [p.problem_id for p in TRAIN[:3]], seed=0)
  with pytest.raises(NotEnoughExemplarsError):
    select_exemplars(TRAIN, 1, [], seed=0, exclude_questions=[p.question for p in TRAIN])


def with_answer(problem, answer):
  return dataclasses.replace(problem, answer=answer)


# Answers 1, 1, 1, 2, 2, 3: at most three distinct.
REPEATS = [with_answer(make_problem(i), a) for i, a in enumerate(["1", "1", "1", "2", "2", "3"])]


def answers_of(problems):
  return sorted(p.answer for p in problems)


def test_distinct_answer_exemplars_never_repeat_an_answer_and_are_deterministic():
  for seed in range(10):
    chosen = select_exemplars(REPEATS, 3, [], seed=seed)
    assert answers_of(chosen) == ["1", "2", "3"]  # the only 3 distinct answers the pool has
    assert chosen == select_exemplars(REPEATS[::-1], 3, [], seed=seed)  # pool order does not matter
    assert chosen == select_exemplars(REPEATS, 3, [], seed=seed, distinct_answers=True)
  picks = {tuple(p.problem_id for p in select_exemplars(REPEATS, 2, [], seed=s)) for s in range(10)}
  assert len(picks) > 1  # still a seeded draw, not a fixed choice
  # Without the switch the plain seeded sample can repeat an answer (it does for some seed here).
  plain = [answers_of(select_exemplars(REPEATS, 3, [], seed=s, distinct_answers=False)) for s in range(10)]
  assert any(len(set(a)) < 3 for a in plain)


def test_distinct_answers_keep_an_already_distinct_sample():
  # TRAIN's answers all differ: the switch must not change which exemplars a sweep gets.
  for seed in range(8):
    assert select_exemplars(TRAIN, 3, [], seed=seed) == select_exemplars(
      TRAIN, 3, [], seed=seed, distinct_answers=False
    )


def test_distinct_answers_compare_numbers_and_fail_clearly():
  same_number = [with_answer(make_problem(0), "7"), with_answer(make_problem(1), "7.0")]
  with pytest.raises(NotEnoughExemplarsError, match="only 1 distinct answers"):
    select_exemplars(same_number, 2, [], seed=0)
  assert len(select_exemplars(same_number, 2, [], seed=0, distinct_answers=False)) == 2
  with pytest.raises(NotEnoughExemplarsError, match=r"need 4 exemplars with distinct final answers.*only 3"):
    select_exemplars(REPEATS, 4, [], seed=0)
  with pytest.raises(NotEnoughExemplarsError, match="distinct_answers=False"):
    select_exemplars(REPEATS, 4, [], seed=0)


def test_exemplar_answers_are_read_back_from_the_prompt():
  chosen = [TRAIN[0], with_answer(TRAIN[1], "1000"), with_answer(TRAIN[2], "2.5")]
  for style in ("cot", "subques", "questcot"):
    assert exemplar_answers(build_prompt(TEST, style, chosen)) == ["13", "1000", "2.5"], style
  chat = build_prompt(TEST, "chat", chosen[:2], tokenizer=make_tokenizer(CHAT_TEMPLATE))
  assert exemplar_answers(chat) == ["13", "1000"]
  assert exemplar_answers(build_prompt(TEST, "zero_shot", [])) == []  # the instruction's "#### <answer>"
  assert exemplar_answers(build_prompt(TEST, "cot", [])) == []
  assert exemplar_answers("Question: q\nAnswer: a\n#### 1,200\n\nQuestion: r #### 5\nAnswer:") == ["1200"]


def test_gold_step_count_counts_non_empty_solution_lines(tmp_path):
  path = tmp_path / "gsm8k.jsonl"
  path.write_text(
    '{"question": "q1", "answer": "A <<1+1=2>>2.\\n\\nB <<2*3=6>>6.\\nC 6.\\n#### 6"}\n'
    '{"question": "q2", "answer": "#### 4"}\n'
  )
  first, answer_only = load_gsm8k(path)
  assert gold_step_count(first) == 3  # the blank line is no step, the '#### 6' line is not counted
  assert gold_step_count(answer_only) is None  # no worked solution: unknown, not zero
  assert gold_step_count(dataclasses.replace(first, rationale=None)) is None
  synthetic = generate_problems(SyntheticConfig(num_steps=(3, 3)), 4, "test")
  assert [gold_step_count(p) for p in synthetic] == [3, 3, 3, 3]


def make_tokenizer(chat_template):
  backend = Tokenizer(models.WordLevel({"<unk>": 0, "a": 1}, unk_token="<unk>"))
  tokenizer = PreTrainedTokenizerFast(tokenizer_object=backend, unk_token="<unk>")
  if chat_template is not None:
    tokenizer.chat_template = chat_template
  return tokenizer


CHAT_TEMPLATE = (
  "{% for message in messages %}<|{{ message['role'] }}|>\n{{ message['content'] }}\n"
  "{% endfor %}{% if add_generation_prompt %}<|assistant|>\n{% endif %}"
)


def test_chat_style_uses_the_tokenizer_template():
  tokenizer = make_tokenizer(CHAT_TEMPLATE)
  prompt = build_prompt(TEST, "chat", TRAIN[:1], tokenizer=tokenizer)
  assert prompt.endswith(f"{TEST.question}\n<|assistant|>\n")
  assert prompt.count("<|user|>") == 2
  assert "<|assistant|>\nAva has 10 + 3 = <<10+3=13>>13 apples.\n#### 13\n" in prompt
  zero_shot = build_prompt(TEST, "chat", [], tokenizer=tokenizer)
  assert zero_shot.count("<|user|>") == 1 and zero_shot.startswith("<|user|>\nSolve")


def test_chat_style_without_template_is_a_clear_error():
  with pytest.raises(PromptError, match="needs a tokenizer with a chat template"):
    build_prompt(TEST, "chat", [], tokenizer=make_tokenizer(None))
  with pytest.raises(PromptError, match="needs a tokenizer with a chat template"):
    build_prompt(TEST, "chat", [])

"""Prompt styles, leak-free exemplar selection, and the chat-template path."""

import pytest
from tokenizers import Tokenizer, models
from transformers import PreTrainedTokenizerFast

from experiments.tasks.answers import extract_answer
from experiments.tasks.datasets import Problem
from experiments.tasks.prompts import (
  QUESTCOT_OPENER,
  NotEnoughExemplarsError,
  PromptError,
  build_prompt,
  format_solution,
  select_exemplars,
  strip_annotations,
  subquestion_for_step,
)


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

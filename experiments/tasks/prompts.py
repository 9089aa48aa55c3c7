"""Prompt construction for the styles the study compares, and leak-free exemplar choice.

All completion styles share one layout so that the decode loop's newline step delimiter
sees one reasoning step per line:

    Question: <question>
    Answer: <step 1>
    <step 2>
    #### <N>

The model continues right after "Answer:" (no trailing space), so the first step is
the text up to the first newline. In "subques" every step is preceded by its own
sub-question line and in "questcot" the first line is "First, how do we start? ...";
those lines count as steps for a newline delimiter too.
"""

from __future__ import annotations

import random
import re
from typing import Any, Iterable, Sequence

from experiments.tasks.datasets import Problem
from model.errors import UserError

STYLES = ("cot", "subques", "questcot", "zero_shot", "chat")
FEW_SHOT_STYLES = ("cot", "subques", "questcot")

QUESTION_PREFIX = "Question: "
ANSWER_PREFIX = "Answer:"
EXEMPLAR_SEPARATOR = "\n\n"
QUESTCOT_OPENER = "First, how do we start?"
INSTRUCTION = (
  "Solve the math word problem. Write one reasoning step per line and end with a line '#### <answer>'."
)
FALLBACK_SUBQUESTION = "Q: What else do we know?"

_ANNOTATION = re.compile(r"<<([^<>=]+)=([^<>]*)>>")


class PromptError(UserError):
  """A prompt cannot be built as asked (unknown style, missing rationale, leak, ...)."""


class NotEnoughExemplarsError(PromptError):
  """The exemplar pool is too small once evaluated problems are excluded."""


def strip_annotations(text: str) -> str:
  """Remove GSM8K calculator annotations: "48/2 = <<48/2=24>>24" -> "48/2 = 24"."""
  return _ANNOTATION.sub("", text)


def final_answer_line(answer: str) -> str:
  return f"#### {answer}"


def subquestion_for_step(step: str) -> str:
  """A generic sub-question for a rationale line, built from its calculator annotations."""
  expressions = [match.group(1).strip() for match in _ANNOTATION.finditer(step)]
  if not expressions:
    return FALLBACK_SUBQUESTION
  if len(expressions) == 1:
    return f"Q: What is {expressions[0]}?"
  return f"Q: What are {', '.join(expressions[:-1])} and {expressions[-1]}?"


def _rationale_lines(problem: Problem) -> list[str]:
  """Non-empty solution lines, one reasoning step each."""
  if problem.rationale is None:
    raise PromptError(
      f"exemplar {problem.problem_id} has no rationale; pick exemplars from a split "
      "with worked solutions (e.g. GSM8K train or the synthetic train split)"
    )
  return [line.strip() for line in problem.rationale.splitlines() if line.strip()]


def format_solution(problem: Problem, style: str, keep_annotations: bool = True) -> str:
  """The target text after "Answer:" for a solved problem, ending with "#### N"."""
  lines = _rationale_lines(problem)
  shown = lines if keep_annotations else [strip_annotations(line) for line in lines]
  if style in ("cot", "zero_shot", "chat"):
    body = shown
  elif style == "subques":
    body = [text for raw, line in zip(lines, shown) for text in (subquestion_for_step(raw), line)]
  elif style == "questcot":
    first_question = subquestion_for_step(lines[0]).removeprefix("Q: ")
    body = [f"{QUESTCOT_OPENER} {first_question}", *shown]
  else:
    raise PromptError(f"unknown prompt style {style!r}; choose one of {STYLES}")
  return "\n".join([*body, final_answer_line(problem.answer)])


def format_exemplar(problem: Problem, style: str, keep_annotations: bool = True) -> str:
  """One few-shot block: question, "Answer: " and the worked solution."""
  solution = format_solution(problem, style, keep_annotations)
  return f"{QUESTION_PREFIX}{problem.question}\n{ANSWER_PREFIX} {solution}"


def _query(problem: Problem) -> str:
  return f"{QUESTION_PREFIX}{problem.question}\n{ANSWER_PREFIX}"


def _check_no_leak(problem: Problem, exemplars: Sequence[Problem]) -> None:
  for exemplar in exemplars:
    if exemplar.problem_id == problem.problem_id or exemplar.question == problem.question:
      raise PromptError(
        f"exemplar {exemplar.problem_id} is the evaluated problem "
        f"{problem.problem_id}; choose exemplars with select_exemplars(exclude_ids=...)"
      )


def _chat_prompt(
  problem: Problem, exemplars: Sequence[Problem], tokenizer: Any, keep_annotations: bool
) -> str:
  """Few-shot (or zero-shot) conversation rendered with the tokenizer's chat template."""
  if tokenizer is None or not getattr(tokenizer, "chat_template", None):
    raise PromptError(
      "style 'chat' needs a tokenizer with a chat template; pass an instruct model's "
      "tokenizer or use style 'cot' / 'zero_shot' for base models"
    )
  messages: list[dict[str, str]] = []
  for exemplar in exemplars:
    messages.append({"role": "user", "content": f"{INSTRUCTION}\n\n{exemplar.question}"})
    messages.append({"role": "assistant", "content": format_solution(exemplar, "chat", keep_annotations)})
  messages.append({"role": "user", "content": f"{INSTRUCTION}\n\n{problem.question}"})
  rendered = tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
  if not isinstance(rendered, str):
    raise PromptError(f"chat template rendered {type(rendered).__name__}, expected str")
  return rendered


def build_prompt(
  problem: Problem,
  style: str,
  exemplars: Sequence[Problem],
  tokenizer: Any = None,
  keep_annotations: bool = True,
) -> str:
  """The prompt text for `problem` in `style`; the model's continuation is the solution.

  `exemplars` must not contain the evaluated problem (checked by id and question text).
  "zero_shot" takes no exemplars; "chat" turns exemplars into earlier conversation turns.
  """
  if style not in STYLES:
    raise PromptError(f"unknown prompt style {style!r}; choose one of {STYLES}")
  _check_no_leak(problem, exemplars)
  if style == "chat":
    return _chat_prompt(problem, exemplars, tokenizer, keep_annotations)
  if style == "zero_shot":
    if exemplars:
      raise PromptError("style 'zero_shot' takes no exemplars; pass exemplars=[]")
    return f"{INSTRUCTION}\n\n{_query(problem)}"
  blocks = [format_exemplar(exemplar, style, keep_annotations) for exemplar in exemplars]
  return EXEMPLAR_SEPARATOR.join([*blocks, _query(problem)])


def select_exemplars(
  pool: Iterable[Problem],
  k: int,
  exclude_ids: Iterable[str],
  seed: int,
  exclude_questions: Iterable[str] = (),
) -> list[Problem]:
  """`k` exemplars with rationales drawn from `pool`, none of them an evaluated problem.

  Deterministic in (pool contents, k, seed) regardless of pool order. Raises
  `NotEnoughExemplarsError` rather than reuse an excluded problem.
  """
  if k < 0:
    raise PromptError(f"k={k}: need a non-negative number of exemplars")
  excluded_ids = set(exclude_ids)
  excluded_questions = set(exclude_questions)
  candidates = sorted(
    (
      problem
      for problem in pool
      if problem.rationale is not None
      and problem.problem_id not in excluded_ids
      and problem.question not in excluded_questions
    ),
    key=lambda problem: problem.problem_id,
  )
  if len(candidates) < k:
    raise NotEnoughExemplarsError(
      f"need {k} exemplars but only {len(candidates)} pool problems have a rationale and "
      "are not evaluated; use a larger train split or fewer shots"
    )
  return random.Random(seed).sample(candidates, k)

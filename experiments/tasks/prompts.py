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

from decode.core.stop_rule import StopRule
from experiments.tasks.answers import NUMBER_PATTERN, normalize_number
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

# Where a row's answer is complete (decode's StopRule; the loop stops the row there). Few-shot and
# zero-shot completions end like lm-eval-harness's GSM8K `until`: at a new "Question:" or the blank
# line that separates problems. A chat turn ends at its end-of-turn token (usually EOS; the literals
# below are stop texts too where the tokenizer has them), not at a blank line, which instruct models
# write between paragraphs. Every style also ends at the end of a final-answer line: "#### N" (our
# exemplars' last line; "#### 1. Count" is a numbered heading), "The (final) answer is N",
# "\\boxed{N}", the statements experiments.tasks.answers reads first.
ANSWER_MARKERS = ("####", "answer is", "boxed{")
HEADING_MARKERS = ("####",)
END_OF_TURN = ("<|im_end|>", "<|eot_id|>", "<end_of_turn>", "<|end|>")

_ANNOTATION = re.compile(r"<<([^<>=]+)=([^<>]*)>>")
# An exemplar's final answer line as `final_answer_line` writes it, at the start of a line.
_ANSWER_LINE = re.compile(rf"^#### ({NUMBER_PATTERN.pattern})", re.MULTILINE)


class PromptError(UserError):
  """A prompt cannot be built as asked (unknown style, missing rationale, leak, ...)."""


class NotEnoughExemplarsError(PromptError):
  """The exemplar pool is too small once evaluated problems are excluded."""


def stop_rule(style: str, tokenizer: Any = None) -> StopRule:
  """When a completion in `style` is complete (the sweep's rows stop there; see ANSWER_MARKERS)."""
  if style not in STYLES:
    raise PromptError(f"unknown prompt style {style!r}; choose one of {STYLES}")
  if style == "chat":
    vocab = tokenizer.get_vocab() if tokenizer is not None else {}
    texts = tuple(t for t in END_OF_TURN if t in vocab)
  else:
    texts = (QUESTION_PREFIX.strip(), EXEMPLAR_SEPARATOR)
  return StopRule(texts=texts, answer_markers=ANSWER_MARKERS, heading_markers=HEADING_MARKERS)


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


def _step_lines(rationale: str) -> list[str]:
  """The study's step rule on a gold solution: every non-empty line is one step."""
  return [line.strip() for line in rationale.splitlines() if line.strip()]


def _rationale_lines(problem: Problem) -> list[str]:
  """Non-empty solution lines, one reasoning step each."""
  if problem.rationale is None:
    raise PromptError(
      f"exemplar {problem.problem_id} has no rationale; pick exemplars from a split "
      "with worked solutions (e.g. GSM8K train or the synthetic train split)"
    )
  return _step_lines(problem.rationale)


def gold_step_count(problem: Problem) -> int | None:
  """Steps of the gold solution (GSM8K: lines before '#### N'), None without a worked solution.

  The report's leakage control needs it: the teacher's step K cannot be the final computation on a
  problem whose gold solution has more than K steps.
  """
  return None if problem.rationale is None else len(_step_lines(problem.rationale))


def exemplar_answers(prompt: str) -> list[str]:
  """Final answers of the exemplars in a built prompt, in prompt order (normalised numbers).

  Read back from the "#### N" lines that `format_solution` writes (in every few-shot style and in
  chat turns), so a results row can record what the student saw without a sweep-level side file.
  Zero-shot prompts give []: the instruction's "'#### <answer>'" is not at a line start.
  """
  found = (normalize_number(m.group(1)) for m in _ANSWER_LINE.finditer(prompt))
  return [answer for answer in found if answer is not None]


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


def _answer_key(problem: Problem) -> str:
  """What "the same final answer" means: equal normalised numbers ("7" == "7.0")."""
  return normalize_number(problem.answer) or problem.answer.strip()


def _distinct_answer_sample(candidates: list[Problem], k: int, seed: int) -> list[Problem]:
  """`k` candidates whose final answers all differ, deterministic in (candidates, k, seed).

  The plain seeded sample is kept when its answers already differ, so existing sweeps keep their
  prompts; otherwise the first problem of each new answer along a seeded permutation of the pool.
  """
  sample = random.Random(seed).sample(candidates, k)
  if len({_answer_key(p) for p in sample}) == k:
    return sample
  chosen: list[Problem] = []
  seen: set[str] = set()
  for problem in random.Random(seed).sample(candidates, len(candidates)):
    if _answer_key(problem) not in seen:
      seen.add(_answer_key(problem))
      chosen.append(problem)
      if len(chosen) == k:
        return chosen
  raise NotEnoughExemplarsError(
    f"need {k} exemplars with distinct final answers but the {len(candidates)} usable pool problems "
    f"have only {len(seen)} distinct answers; use a larger train split, fewer shots, or set "
    "exemplars.distinct_answers=False"
  )


def select_exemplars(
  pool: Iterable[Problem],
  k: int,
  exclude_ids: Iterable[str],
  seed: int,
  exclude_questions: Iterable[str] = (),
  distinct_answers: bool = True,
) -> list[Problem]:
  """`k` exemplars with rationales drawn from `pool`, none of them an evaluated problem.

  With `distinct_answers` no two exemplars share a final answer: a repeated answer invites the
  student to copy it (the report measures how often predictions equal an exemplar's answer).
  Deterministic in (pool contents, k, seed, distinct_answers) regardless of pool order. Raises
  `NotEnoughExemplarsError` rather than reuse an excluded problem or repeat an answer.
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
  if distinct_answers:
    return _distinct_answer_sample(candidates, k, seed)
  return random.Random(seed).sample(candidates, k)

"""The embedded default task: seeded multi-step arithmetic word problems in GSM8K format.

It lets the whole study run offline with tiny models: a small fixed vocabulary, one
reasoning step per rationale line with `<<a+b=c>>` annotations, and a final "#### N".
The first step is where the problems differ most (a direct start, or a comparison with
another person, amid distractor sentences), which is the place the study probes.
`hard_step` moves the hard decision: a competing quantity placed at one chosen step, so an
experiment can ask whether the best step for a teacher follows it.

Splits are disjoint by construction: a question belongs to the split its text hashes to,
so train and test never share a question however many of each are generated.
"""

from __future__ import annotations

import hashlib
import json
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

from experiments.tasks.datasets import Problem
from model.errors import UserError

NAMES = ("Ava", "Ben", "Cara", "Dan", "Eva", "Finn", "Gus", "Ivy")
OBJECTS = ("apples", "pears", "books", "coins", "cards", "stamps")

SUPPORTED_OPERATIONS = frozenset("+-*")
# How the hard step's competing quantity reads: "step" = another person doing the step's own kind of
# change ("Dan buys 7 more apples."), a sentence the shipped demo models never saw a bystander say;
# "count" = the same-object distractor they were trained on ("Dan has 7 apples.").
HARD_PHRASINGS = ("step", "count")
# Fraction of the 256 hash buckets each split owns; they must not overlap.
SPLIT_BUCKETS: dict[str, range] = {
  "train": range(0, 208),
  "dev": range(208, 232),
  "test": range(232, 256),
}
SOURCE = "synthetic"
# Attempts in a row that yield no new problem before the space counts as exhausted
# (a normal test-split draw rarely needs more than ~100: the split owns 1/11 of questions).
MAX_FAILURES_IN_A_ROW = 5_000


class SyntheticConfigError(UserError):
  """A SyntheticConfig that cannot produce the requested problems."""


@dataclass(frozen=True)
class SyntheticConfig:
  """Knobs of the generator; every range is inclusive.

  num_steps: how many arithmetic steps (rationale lines) a solution takes.
  num_distractors: how many irrelevant quantities the story mentions.
  number_range: operands of "+" and "-" and the starting quantities.
  multiplier_range: operands of "*" (kept small so values stay bounded).
  max_value: no quantity in the story or solution exceeds it.
  hard_step: 0 keeps the plain generator (same problems for the same seed); k >= 1 puts a
    competing quantity right before step k's sentence: another person, the same object, a number
    other than step k's operand (from the same range), so picking step k's operand is the hard decision.
  hard_phrasing: how that quantity reads (HARD_PHRASINGS): "step", the step's own phrasing and
    operation; "count", a plain count of the object.
  """

  num_steps: tuple[int, int] = (2, 4)
  num_distractors: tuple[int, int] = (0, 2)
  number_range: tuple[int, int] = (2, 20)
  multiplier_range: tuple[int, int] = (2, 4)
  operations: str = "+-*"
  max_value: int = 999
  seed: int = 0
  hard_step: int = 0
  hard_phrasing: str = "step"

  def validate(self) -> None:
    """Reject settings the generator cannot honour, naming the knob to change."""
    for name in ("num_steps", "num_distractors", "number_range", "multiplier_range"):
      low, high = getattr(self, name)
      if low > high or low < 0:
        raise SyntheticConfigError(f"{name}={getattr(self, name)}: need 0 <= min <= max")
    if self.number_range[0] < 1 or self.multiplier_range[0] < 1:
      raise SyntheticConfigError(
        f"number_range={self.number_range}, multiplier_range={self.multiplier_range}: "
        "minimums must be >= 1 so every quantity stays positive"
      )
    if self.num_steps[0] < 1:
      raise SyntheticConfigError(f"num_steps={self.num_steps}: need at least one step")
    if not self.operations or not set(self.operations) <= SUPPORTED_OPERATIONS:
      raise SyntheticConfigError(f"operations={self.operations!r}: use a non-empty subset of '+-*'")
    if self.number_range[1] > self.max_value:
      raise SyntheticConfigError(f"number_range={self.number_range} exceeds max_value={self.max_value}")
    # Every problem must have a step k, so k is bounded by the fewest steps a problem can take.
    if not isinstance(self.hard_step, int) or not 0 <= self.hard_step <= self.num_steps[0]:
      raise SyntheticConfigError(
        f"hard_step={self.hard_step!r}: need an int in [0, {self.num_steps[0]}] (0 = none; at most the "
        f"fewest steps, num_steps={self.num_steps})"
      )
    if self.hard_phrasing not in HARD_PHRASINGS:
      raise SyntheticConfigError(f"hard_phrasing={self.hard_phrasing!r}: choose one of {HARD_PHRASINGS}")


def _apply(value: int, operation: str, operand: int) -> int:
  if operation == "+":
    return value + operand
  if operation == "-":
    return value - operand
  return value * operand


def _solution_line(person: str, obj: str, value: int, operation: str, operand: int) -> str:
  """One rationale step, GSM8K style: "Ava has 12 + 5 = <<12+5=17>>17 apples."."""
  result = _apply(value, operation, operand)
  return (
    f"{person} has {value} {operation} {operand} = <<{value}{operation}{operand}={result}>>{result} {obj}."
  )


def _operand_bounds(cfg: SyntheticConfig, value: int, operation: str) -> tuple[int, int] | None:
  """Inclusive operand range keeping the result within [1, max_value]; None if empty."""
  if operation == "*":
    low, high = cfg.multiplier_range
    if value > 0:
      high = min(high, cfg.max_value // value)
  elif operation == "-":
    low, high = cfg.number_range[0], min(cfg.number_range[1], value - 1)
  else:
    low, high = cfg.number_range[0], min(cfg.number_range[1], cfg.max_value - value)
  return (low, high) if low <= high else None


def _event_sentence(rng: random.Random, person: str, other: str, obj: str, op: str, n: int) -> str:
  """A story sentence that changes `person`'s count by `op n`."""
  if op == "+":
    return rng.choice(
      (
        f"{person} buys {n} more {obj}.",
        f"{person} finds {n} more {obj}.",
        f"{person} gets {n} {obj} from {other}.",
      )
    )
  if op == "-":
    return rng.choice(
      (
        f"{person} gives {n} {obj} to {other}.",
        f"{person} loses {n} {obj}.",
        f"{person} sells {n} {obj}.",
      )
    )
  return f"{person} now has {n} times as many {obj} as before."


def _comparison_sentence(person: str, other: str, obj: str, op: str, n: int) -> str:
  """The first step of a comparison start: `person` relative to `other`."""
  if op == "+":
    return f"{person} has {n} more {obj} than {other}."
  if op == "-":
    return f"{person} has {n} fewer {obj} than {other}."
  return f"{person} has {n} times as many {obj} as {other}."


def _distractor_sentence(
  rng: random.Random, cfg: SyntheticConfig, names: list[str], obj: str, other_obj: str
) -> str:
  """An irrelevant quantity: another person's count, or the hero's other objects."""
  n = rng.randint(*cfg.number_range)
  # names[1] may be the comparison rival, whose count is part of the chain.
  person, bystander = names[0], rng.choice(names[2:])
  if rng.random() < 0.5:
    return f"{bystander} has {n} {obj}."
  return f"{person} also has {n} {other_obj}."


def _competitor_sentence(
  rng: random.Random,
  cfg: SyntheticConfig,
  names: list[str],
  obj: str,
  comparison: bool,
  op: str,
  operand: int,
) -> str | None:
  """The hard step's rival quantity, said by a bystander; None when the range has no other number."""
  low, high = cfg.multiplier_range if op == "*" else cfg.number_range
  others = [n for n in range(low, high + 1) if n != operand]
  if not others:
    return None
  n = rng.choice(others)
  # names[3] is neither the hero, the comparison rival, nor the helper the events name.
  if cfg.hard_phrasing == "count":
    return f"{names[3]} has {n} {obj}."
  if comparison:
    return _comparison_sentence(names[3], names[1], obj, op, n)
  return _event_sentence(rng, names[3], names[2], obj, op, n)


def _try_generate(rng: random.Random, cfg: SyntheticConfig) -> tuple[str, str, str] | None:
  """One (question, rationale, answer) attempt; None when the chain hit a bound."""
  names = rng.sample(NAMES, 4)
  person, rival, helper = names[0], names[1], names[2]
  obj, other_obj = rng.sample(OBJECTS, 2)
  num_steps = rng.randint(*cfg.num_steps)
  operations = sorted(set(cfg.operations))

  sentences: list[str] = []
  lines: list[str] = []
  start = rng.randint(*cfg.number_range)
  comparison_start = rng.random() < 0.5
  if comparison_start:
    sentences.append(f"{rival} has {start} {obj}.")
  else:
    sentences.append(f"{person} has {start} {obj}.")
  value = start
  competitor = None

  for index in range(num_steps):
    bounds = {op: _operand_bounds(cfg, value, op) for op in operations}
    choices = [op for op in operations if bounds[op] is not None]
    if not choices:
      return None
    operation = rng.choice(choices)
    operand = rng.randint(*bounds[operation])
    result = _apply(value, operation, operand)
    if comparison_start and index == 0:
      sentence = _comparison_sentence(person, rival, obj, operation, operand)
    else:
      sentence = _event_sentence(rng, person, helper, obj, operation, operand)
    sentences.append(sentence)
    lines.append(_solution_line(person, obj, value, operation, operand))
    value = result
    if index + 1 == cfg.hard_step:  # draws only when the knob is on: hard_step=0 keeps the old stream
      comparison = comparison_start and index == 0
      competitor = _competitor_sentence(rng, cfg, names, obj, comparison, operation, operand)
      if competitor is None:
        return None

  # Sentence i is step i's (0 is the start) until distractors shift them; track where each went.
  steps_at = list(range(len(sentences)))
  for _ in range(rng.randint(*cfg.num_distractors)):
    position = rng.randint(1, len(sentences))
    sentences.insert(position, _distractor_sentence(rng, cfg, names, obj, other_obj))
    steps_at.insert(position, -1)
  if competitor is not None:
    sentences.insert(steps_at.index(cfg.hard_step), competitor)

  question = " ".join(sentences) + f" How many {obj} does {person} have now?"
  return question, "\n".join(lines), str(value)


def split_of_question(question: str) -> str:
  """The split a question text belongs to (hash bucket), making splits disjoint."""
  bucket = hashlib.sha256(question.encode("utf-8")).digest()[0]
  for split, buckets in SPLIT_BUCKETS.items():
    if bucket in buckets:
      return split
  raise AssertionError(f"SPLIT_BUCKETS does not cover bucket {bucket}")


def generate_problems(cfg: SyntheticConfig, n: int, split: str) -> list[Problem]:
  """`n` distinct problems of `split` ("train", "dev" or "test"), deterministic in cfg.

  Ids are "synthetic/<split>/<i>", matching what `load_gsm8k(path, split, "synthetic")`
  assigns when the problems are written with `write_gsm8k_jsonl` and read back.
  """
  cfg.validate()
  if split not in SPLIT_BUCKETS:
    raise SyntheticConfigError(f"split {split!r}: choose one of {sorted(SPLIT_BUCKETS)}")
  if n < 0:
    raise SyntheticConfigError(f"n={n}: need a non-negative number of problems")
  rng = random.Random(f"{SOURCE}/{cfg.seed}/{split}")
  problems: list[Problem] = []
  seen: set[str] = set()
  failures_in_a_row = 0
  while len(problems) < n:
    if failures_in_a_row >= MAX_FAILURES_IN_A_ROW:
      raise SyntheticConfigError(
        f"only {len(problems)} of {n} distinct {split} problems: the last "
        f"{MAX_FAILURES_IN_A_ROW} attempts gave nothing new; widen number_range, "
        "num_steps or num_distractors, or ask for fewer problems"
      )
    generated = _try_generate(rng, cfg)
    if generated is None or generated[0] in seen or split_of_question(generated[0]) != split:
      failures_in_a_row += 1
      continue
    failures_in_a_row = 0
    question, rationale, answer = generated
    seen.add(question)
    problems.append(
      Problem(
        problem_id=f"{SOURCE}/{split}/{len(problems)}",
        question=question,
        answer=answer,
        rationale=rationale,
        source=SOURCE,
      )
    )
  return problems


def gsm8k_answer_field(problem: Problem) -> str:
  """The GSM8K "answer" field: rationale lines then "#### N"."""
  if problem.rationale is None:
    raise SyntheticConfigError(f"{problem.problem_id}: no rationale to write in GSM8K format")
  return f"{problem.rationale}\n#### {problem.answer}"


def write_gsm8k_jsonl(problems: Iterable[Problem], path: str | Path) -> Path:
  """Write problems as GSM8K jsonl so `load_gsm8k` (or `load_task("synthetic", ...)`) reads them."""
  path = Path(path)
  path.parent.mkdir(parents=True, exist_ok=True)
  with path.open("w", encoding="utf-8") as handle:
    for problem in problems:
      record = {"question": problem.question, "answer": gsm8k_answer_field(problem)}
      handle.write(json.dumps(record) + "\n")
  return path

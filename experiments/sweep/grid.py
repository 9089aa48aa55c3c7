"""The sweep grid: (student x checkpoint) x seeds x policies x problems -> rows with stable ids."""

from __future__ import annotations

import dataclasses
import zlib

from decode.core.policy import Policy
from experiments.tasks.datasets import Problem


@dataclasses.dataclass(frozen=True)
class ModelEntry:
  """One student to evaluate; several entries may share a name with different checkpoint labels."""

  name: str
  path: str
  checkpoint: str | None = None
  source: str = "hf"  # "hf": a Hugging Face directory; "orbax": a training run's step (params only)
  config_dir: str | None = None  # orbax: the HF directory with the run's config.json and tokenizer


@dataclasses.dataclass(frozen=True)
class SweepRow:
  task: str
  problem: Problem
  prompt: str
  student: ModelEntry
  teacher: str | None
  policy: Policy
  seed: int
  matched_to: str | None = None  # a matched random control: the spec of the trigger it matches

  @property
  def row_id(self) -> str:
    return "|".join(
      [
        self.task,
        self.student.name,
        self.student.checkpoint or "-",
        self.teacher or "-",
        # A matched control names its trigger too: it never shares an id with a listed policy of
        # the same spec (nor with another trigger's control at the same rate).
        self.policy.spec + (f"@{self.matched_to}" if self.matched_to else ""),
        str(self.seed),
        self.problem.problem_id,
      ]
    )

  @property
  def student_key(self) -> tuple:
    """(task, student, checkpoint): whose row this is (`record_student_key` reads it off a results row)."""
    return (self.task, self.student.name, self.student.checkpoint)

  @property
  def base_key(self) -> tuple:
    """(task, student, checkpoint, seed, problem id): the student-only run that every policy's row of
    this problem and seed shares, fork mode's base run (`record_base_key` reads it off a results row)."""
    return (*self.student_key, self.seed, self.problem.problem_id)

  @property
  def row_seed(self) -> int:
    """Sampling seed from (problem, seed) only, so policies are paired counterfactuals."""
    return zlib.crc32(f"{self.problem.problem_id}|{self.seed}".encode()) & 0x7FFFFFFF


def record_student_key(rec: dict) -> tuple:
  """SweepRow.student_key of a results row (a plain dict from results.jsonl)."""
  return (rec["task"], rec["student"], rec["checkpoint"])


def record_base_key(rec: dict) -> tuple:
  """SweepRow.base_key of a results row (a plain dict from results.jsonl)."""
  return (*record_student_key(rec), rec["seed"], rec["problem_id"])


def expand_grid(
  task: str,
  problems: list[Problem],
  prompts: dict[str, str],
  students: list[ModelEntry],
  teacher: str | None,
  policies: list[Policy],
  seeds: list[int],
) -> list[SweepRow]:
  """Deterministic order: student entry, seed, policy, problem."""
  seen: set[str] = set()
  specs = []
  for p in policies:  # canonical specs; duplicates in the config collapse to one
    if p.spec not in seen:
      seen.add(p.spec)
      specs.append(p)
  return [
    SweepRow(task, prob, prompts[prob.problem_id], st, teacher, pol, seed)
    for st in students
    for seed in seeds
    for pol in specs
    for prob in problems
  ]

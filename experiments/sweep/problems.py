"""A sweep's problems and prompts: the task source, its first N problems, the few-shot exemplars.

Why the exemplars are chosen once: every prompt of a sweep carries them, so a grown sweep must build
the prompts of its new problems with the exemplars its old rows were decoded with. They are chosen
from the pool leaving out every problem of the task source (not only the evaluated ones, which a
grown `limit` would change), and their ids are recorded in the manifest (`exemplars.chosen`); a
later run uses the recorded ones. A dir from before (format 1) chose them leaving out the problems it
evaluated; the same choice is made again from its recorded extent.
"""

from __future__ import annotations

from pathlib import Path

from experiments.sweep.config import ExemplarsConfig, SweepConfig, SweepConfigError, TaskConfig
from experiments.tasks.datasets import Problem, load_task
from experiments.tasks.prompts import build_prompt, select_exemplars
from experiments.tasks.synthetic import generate_problems
from model.errors import MissingFileError


def load_problems(task: TaskConfig) -> list[Problem]:
  """Every problem of the task source: a local file, or the embedded synthetic generator (its
  `num_problems`; the generator makes the same first problems whatever the count)."""
  if task.name == "synthetic" and not task.path:
    return generate_problems(task.synthetic, task.num_problems, "test")
  if not task.path:
    raise SweepConfigError(f"task {task.name!r} needs --config.task.path pointing at a local file")
  path = Path(task.path)
  if not path.exists():
    raise MissingFileError(f"task file {path} does not exist; check --config.task.path")
  return load_task(task.name, path)


def load_exemplar_pool(ex: ExemplarsConfig, task: TaskConfig) -> list[Problem]:
  if ex.path:
    return load_task(ex.task, ex.path)
  if task.name == "synthetic":
    return generate_problems(task.synthetic, max(4 * ex.k, 16), "train")
  if ex.k:
    raise SweepConfigError("few-shot prompts need exemplars: set --config.exemplars.path to a train split")
  return []


def _select(ex: ExemplarsConfig, pool: list[Problem], excluded: list[Problem]) -> list[Problem]:
  return select_exemplars(
    pool,
    ex.k,
    exclude_ids={p.problem_id for p in excluded},
    seed=ex.seed,
    exclude_questions={p.question for p in excluded},
    distinct_answers=ex.distinct_answers,
  )


def choose_exemplars(cfg: SweepConfig, source: list[Problem], old: dict | None) -> list[Problem]:
  """The sweep's exemplars: as `old` (the dir's manifest) records them, else chosen here, leaving
  out every problem of `source` (the whole task)."""
  ex = cfg.exemplars
  if not ex.k:
    return []
  pool = load_exemplar_pool(ex, cfg.task)
  recorded = ((old or {}).get("content", {}).get("exemplars") or {}).get("chosen")
  by_id = {p.problem_id: p for p in pool}
  if recorded is not None and all(i in by_id for i in recorded):
    return [by_id[i] for i in recorded]
  if old is not None and recorded is None:  # format 1: the problems it evaluated were left out
    count = old["extent"]["problems"]
    return _select(ex, pool, source if count is None else source[:count])
  # A new dir; or another pool than the recorded one's, which the manifest check then refuses.
  return _select(ex, pool, source)


def check_not_exemplars(problems: list[Problem], exemplars: list[Problem]) -> None:
  """Refuses problems that are among the sweep's exemplars (possible only where a format-1 dir chose
  them from the problems it evaluated then, and the sweep has grown since)."""
  ids, questions = {e.problem_id for e in exemplars}, {e.question for e in exemplars}
  clash = sorted({p.problem_id for p in problems if p.problem_id in ids or p.question in questions})
  if clash:
    raise SweepConfigError(
      f"problem(s) {clash} are among this sweep's few-shot exemplars (chosen when it began, from the "
      "problems it evaluated then): give this run a new --config.output_dir, or a smaller limit"
    )


def build_prompts(
  cfg: SweepConfig, problems: list[Problem], exemplars: list[Problem], tokenizer
) -> dict[str, str]:
  return {p.problem_id: build_prompt(p, cfg.prompt_style, exemplars, tokenizer=tokenizer) for p in problems}

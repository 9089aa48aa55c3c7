"""Timing sweeps: config -> grid -> the one compiled loop -> results.jsonl -> report.

  python -m experiments.sweep --config configs/NAME.py [--config.key=value ...]

Writes into config.output_dir: manifest.json (the settings that define the rows; a resume with
other such settings is refused, see manifest.py), results.jsonl (one row per problem x policy x seed x
student; append-only, so re-running the same command resumes; one writer at a time, see lock.py),
summary.csv, report.md and plots.
"""

from __future__ import annotations

from pathlib import Path

from ml_collections import ConfigDict

from decode.bridge.pairing import make_decoder
from decode.core.policy import parse_policy
from experiments.sweep import manifest as sweep_manifest
from experiments.sweep.config import ExemplarsConfig, SweepConfig, SweepConfigError, TaskConfig, parse_config
from experiments.sweep.grid import expand_grid
from experiments.sweep.runner import DecodeSettings, SweepRunner
from experiments.sweep.store import ResultsStore
from experiments.sweep.students import load_student, student_entries
from experiments.sweep.teacher import check_teacher, load_teacher
from experiments.tasks.datasets import Problem, load_task
from experiments.tasks.prompts import build_prompt, select_exemplars
from experiments.tasks.synthetic import generate_problems
from model.errors import MissingFileError, ModelLoadError
from model.hf_import import model_exists


def load_problems(task: TaskConfig) -> list[Problem]:
  """Evaluation problems from a local file, or the embedded synthetic generator when no path."""
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


def build_prompts(cfg: SweepConfig, problems: list[Problem], tokenizer) -> dict[str, str]:
  ex = cfg.exemplars
  pool = load_exemplar_pool(ex, cfg.task)
  exemplars = (
    select_exemplars(
      pool,
      ex.k,
      exclude_ids={p.problem_id for p in problems},
      seed=ex.seed,
      exclude_questions={p.question for p in problems},
      distinct_answers=ex.distinct_answers,
    )
    if ex.k
    else []
  )
  return {p.problem_id: build_prompt(p, cfg.prompt_style, exemplars, tokenizer=tokenizer) for p in problems}


def validate(cfg: SweepConfig) -> list:
  """Everything that can be checked before loading a model or touching the output dir."""
  if not cfg.output_dir:
    raise SweepConfigError("set config.output_dir (e.g. --config.output_dir=runs/my_sweep)")
  policies = [parse_policy(p) for p in cfg.policies]
  if not policies:
    raise SweepConfigError("config.policies is empty")
  check_teacher(cfg.teacher, policies)
  if cfg.batch_size <= 0 or cfg.max_new_tokens <= 0:
    raise SweepConfigError("batch_size and max_new_tokens must be positive")
  if cfg.teacher_chunk < 1 or cfg.teacher_sub_batches < 0:
    raise SweepConfigError(
      "teacher_chunk must be >= 1 and teacher_sub_batches >= 0 (0 = teacher on whole batches)"
    )
  for entry in student_entries(cfg.students):
    if not model_exists(entry.path):
      raise ModelLoadError(
        f"student {entry.name!r}: {entry.path} does not exist (a model directory or .gguf file)"
      )
  from experiments.sweep.distributed import check_settings

  check_settings(cfg.distributed)
  return policies


def _other_results(output_dir: Path, mine: str) -> list[Path]:
  """The other processes' results files (their finished rows are not decoded again here)."""
  return sorted(p for p in output_dir.glob("results*.jsonl") if p.name != mine)


def run_sweep(cfg: ConfigDict | SweepConfig, progress: bool = True) -> dict:
  """Runs (or resumes) the sweep; returns stats (compiles, loop calls) for callers and tests.

  `cfg`: the CLI's parsed SweepConfig, or a ConfigDict (demo, tests), parsed here.
  """
  from experiments.sweep import distributed as mesh_setup

  cfg = parse_config(cfg)
  policies = validate(cfg)
  ctx = mesh_setup.setup(cfg)
  problems = load_problems(cfg.task)
  if cfg.limit is not None:
    problems = problems[: cfg.limit]
  if not problems:
    raise SweepConfigError(f"task {cfg.task.name!r} has no problems to evaluate (empty file or limit)")
  out = Path(cfg.output_dir)
  manifest = sweep_manifest.build(cfg, policies)
  # A different sweep in this dir is refused before anything (the lock file included) is written.
  sweep_manifest.check(out, manifest, warn=False)
  # One writer per results file (a second sweep here is refused), held until the sweep ends or dies.
  store = ResultsStore(out / ctx.results_name, others=_other_results(out, ctx.results_name))
  try:
    wait_s = cfg.distributed.initialization_timeout
    sweep_manifest.ensure(out, manifest, writer=ctx.is_reporter, wait_s=wait_s)
    stats = _run(cfg, ctx, policies, problems, store, progress)
    ctx.barrier()
    if ctx.is_reporter:
      from experiments.report.writer import write_report

      write_report(cfg.output_dir)
  finally:
    store.close()
  return stats


def _run(
  cfg: SweepConfig, ctx, policies: list, problems: list[Problem], store: ResultsStore, progress: bool
) -> dict:
  """Loads the models and decodes this process's pending rows into `store`."""
  teacher = load_teacher(cfg, mesh=ctx.mesh, rules=ctx.teacher_rules)  # a server: checked to answer
  stats = {"compiles": 0, "loop_calls": 0, "rows": 0}
  for entry in student_entries(cfg.students):
    student = load_student(
      entry, dtype=cfg.dtype, mesh=ctx.mesh, rules=ctx.student_rules, scan_layers=cfg.scan_layers
    )
    decoder = make_decoder(  # the one loop, or the text bridge for another tokenizer or a server
      student,
      teacher,
      step_delimiter=cfg.step_delimiter,
      teacher_chunk=cfg.teacher_chunk,
      teacher_sub_batches=cfg.teacher_sub_batches,
      mesh=ctx.mesh,
      student_rules=ctx.student_rules,
      teacher_rules=ctx.teacher_rules,
    )
    prompts = build_prompts(cfg, problems, student.tokenizer)
    rows = expand_grid(
      cfg.task.name, problems, prompts, [entry], teacher.name if teacher else None, policies, list(cfg.seeds)
    )
    mine = ctx.my_rows(rows)
    prompt_ids = decoder.encode(list(prompts.values()))
    max_len = decoder.buffer_length(
      max(map(len, prompt_ids)), cfg.max_new_tokens
    )  # one shape for all batches
    # The prompts' common prefix (few-shot exemplars), prefilled once per model for the whole sweep.
    shared = decoder.shared_prefix(prompt_ids, max_len=max_len) if cfg.shared_prefix else None
    settings = DecodeSettings(
      batch_size=ctx.global_batch(cfg.batch_size),
      max_len=max_len,
      max_new_tokens=cfg.max_new_tokens,
      max_steps=cfg.max_steps,
      temperature=cfg.temperature,
      top_k=cfg.top_k,
      top_p=cfg.top_p,
    )
    runner = SweepRunner(
      decoder,
      store,
      settings,
      fork=cfg.fork and decoder.can_fork,  # the bridge has no prefill to fork from
      progress=progress,
      shared_prefix=shared,
      matched_random=cfg.matched_random,
    )
    runner.run(mine)
    stats["compiles"] += decoder.compiles
    stats["loop_calls"] += runner.loop_calls
    stats["rows"] += len(mine)
  return stats

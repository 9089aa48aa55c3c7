"""Timing sweeps: config -> grid -> the one compiled loop -> results.jsonl -> report.

  python -m experiments.sweep --config configs/NAME.py [--config.key=value ...]

Writes into config.output_dir: manifest.json (what the rows are, which ones this config lists, and
the dir's runs; a resume with other content settings is refused, one with more or fewer problems,
policies, seeds or students grows the sweep: see manifest.py), results.jsonl (one row per problem x
policy x seed x student; append-only, so re-running the same command resumes; one writer at a time,
see lock.py), thresholds.json (calibrated thresholds and matched rates, fixed once set), summary.csv,
report.md and plots (the rows this config lists, or every row with report_all_rows).
"""

from __future__ import annotations

from pathlib import Path

from ml_collections import ConfigDict

from decode.bridge.pairing import make_decoder
from decode.core.policy import parse_policy
from decode.core.stop_rule import StopRule
from experiments.sweep import extent as sweep_extent
from experiments.sweep import manifest as sweep_manifest
from experiments.sweep.calibrator import SweepCalibrator
from experiments.sweep.config import SweepConfig, SweepConfigError, parse_config
from experiments.sweep.grid import ModelEntry, expand_grid
from experiments.sweep.problems import build_prompts, check_not_exemplars, choose_exemplars, load_problems
from experiments.sweep.runner import DecodeSettings, SweepRunner, done_already
from experiments.sweep.store import ResultsStore
from experiments.sweep.students import load_student, student_entries
from experiments.sweep.teacher import check_teacher, load_teacher
from experiments.sweep.thresholds import CalibrationBook, book_path
from experiments.tasks.datasets import Problem
from experiments.tasks.prompts import stop_rule
from model.errors import ModelLoadError
from model.hf_import import model_exists


def validate(cfg: SweepConfig) -> tuple[list, list[ModelEntry]]:
  """Everything that can be checked before loading a model or touching the output dir; returns the
  policies and the students (a run's checkpoints listed once, here: one arriving later waits)."""
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
  entries = student_entries(cfg.students)
  for entry in entries:
    if not model_exists(entry.path):
      raise ModelLoadError(
        f"student {entry.name!r}: {entry.path} does not exist (a model directory or .gguf file)"
      )
  from experiments.sweep.distributed import check_settings

  check_settings(cfg.distributed)
  return policies, entries


def _other_results(output_dir: Path, mine: str) -> list[Path]:
  """The other processes' results files (their finished rows are not decoded again here)."""
  return sorted(p for p in output_dir.glob("results*.jsonl") if p.name != mine)


def run_sweep(cfg: ConfigDict | SweepConfig, progress: bool = True) -> dict:
  """Runs (or resumes, or grows) the sweep; returns stats for callers and tests: compiles, loop
  calls, rows (listed here), decoded (new rows written), kept (listed rows already there), superseded,
  and on process 0 outside (rows the config no longer lists, left out of the report by default).

  `cfg`: the CLI's parsed SweepConfig, or a ConfigDict (demo, tests), parsed here.
  """
  from experiments.sweep import distributed as mesh_setup

  cfg = parse_config(cfg)
  policies, entries = validate(cfg)
  ctx = mesh_setup.setup(cfg)
  source = load_problems(cfg.task)
  problems = source[: cfg.limit] if cfg.limit is not None else source
  if not problems:
    raise SweepConfigError(f"task {cfg.task.name!r} has no problems to evaluate (empty file or limit)")
  out = Path(cfg.output_dir)
  exemplars = choose_exemplars(cfg, source, sweep_manifest.read(out))
  manifest = sweep_manifest.build(
    cfg, policies, entries, [p.problem_id for p in problems], [e.problem_id for e in exemplars]
  )
  # A different sweep in this dir is refused before anything (the lock file included) is written.
  sweep_manifest.check(out, manifest, warn=False)
  check_not_exemplars(problems, exemplars)
  # One writer per results file (a second sweep here is refused), held until the sweep ends or dies.
  store = ResultsStore(out / ctx.results_name, others=_other_results(out, ctx.results_name), owns=ctx.owns)
  try:
    wait_s = cfg.distributed.initialization_timeout
    sweep_manifest.ensure(out, manifest, writer=ctx.is_reporter, wait_s=wait_s)
    book = CalibrationBook(book_path(out))  # one for the sweep: process 0 writes it, the others read it
    stats = _run(cfg, ctx, policies, entries, problems, exemplars, store, book, progress)
    ctx.barrier()
    if ctx.is_reporter:
      stats["outside"] = _write_report(out, None if cfg.report_all_rows else manifest["extent"])
      counts = ("decoded", "kept", "superseded", "outside")
      sweep_manifest.finish(out, {k: stats[k] for k in counts})
  finally:
    store.close()
  return stats


def _write_report(out: Path, extent: dict | None) -> int:
  """The report over the rows `extent` lists (every row when None); returns how many it left out."""
  from experiments.report.analysis import load_results
  from experiments.report.writer import write_report

  df = load_results(out)
  if extent is None:
    write_report(out, df)
    return 0
  keep = sweep_extent.lister(extent)
  mask = [keep(r) for r in df.to_dict("records")]
  write_report(out, df[mask].reset_index(drop=True))
  return len(mask) - sum(mask)


def _run(
  cfg: SweepConfig,
  ctx,
  policies: list,
  entries: list[ModelEntry],
  problems: list[Problem],
  exemplars: list[Problem],
  store: ResultsStore,
  book: CalibrationBook,
  progress: bool,
) -> dict:
  """Loads the models a student with pending rows needs and decodes this process's pending rows."""
  t = cfg.teacher
  teacher_name = t.name if (t.path or t.url) else None
  teacher = None  # loaded once, by the first student with rows to decode (a server: checked to answer)
  stats = {"compiles": 0, "loop_calls": 0, "rows": 0, "decoded": 0, "kept": 0, "superseded": 0}
  ids = {p.problem_id: "" for p in problems}  # row ids do not depend on the prompt's text
  for entry in entries:
    grid = expand_grid(cfg.task.name, problems, ids, [entry], teacher_name, policies, list(cfg.seeds))
    listed = ctx.my_rows(grid)
    stats["rows"] += len(listed)
    done = None if cfg.recalibrate else done_already(listed, store, book, cfg.matched_random)
    if done is not None and ctx.is_reporter and ctx.num_processes > 1:  # process 0 sets the whole grid's
      done = done if done_already(grid, store, book, cfg.matched_random) is not None else None  # values
    if done is not None:  # every row it lists is in the results: no model to load
      stats["kept"] += done
      continue
    if teacher is None and teacher_name is not None:
      teacher = load_teacher(cfg, mesh=ctx.mesh, rules=ctx.teacher_rules)
    student = load_student(
      entry, dtype=cfg.dtype, mesh=ctx.mesh, rules=ctx.student_rules, scan_layers=cfg.scan_layers
    )
    decoder = make_decoder(  # the one loop, or the text bridge for another tokenizer or a server
      student,
      teacher,
      step_delimiter=cfg.step_delimiter,
      stop=stop_rule(cfg.prompt_style, student.tokenizer) if cfg.stop_at_answer else StopRule(),
      teacher_chunk=cfg.teacher_chunk,
      teacher_sub_batches=cfg.teacher_sub_batches,
      mesh=ctx.mesh,
      student_rules=ctx.student_rules,
      teacher_rules=ctx.teacher_rules,
    )
    prompts = build_prompts(cfg, problems, exemplars, student.tokenizer)
    rows = expand_grid(cfg.task.name, problems, prompts, [entry], teacher_name, policies, list(cfg.seeds))
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
      fork=cfg.fork and decoder.can_fork,  # both decoders fork (the bridge forks the student's caches)
      progress=progress,
      shared_prefix=shared,
      matched_random=cfg.matched_random,
      calibrator=SweepCalibrator(
        store, book, recalibrate=cfg.recalibrate, writer=ctx.is_reporter, wait=ctx.num_processes > 1
      ),
    )
    runner.run(mine, grid=rows)
    stats["compiles"] += decoder.compiles
    stats["loop_calls"] += runner.loop_calls
    stats["kept"] += len(runner.kept)
    stats["superseded"] += runner.superseded
  stats["decoded"] = store.appended
  return stats

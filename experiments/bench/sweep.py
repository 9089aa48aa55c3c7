"""Benchmark section `sweep`: a timing sweep in fork mode vs the same rows as separate runs.

Runs `experiments.sweep.runner.SweepRunner` over `step:1..step:sweep_timings` on one fresh decoder, with
fork=True and fork=False (interleaved), and counts the compiles a fresh decoder's first sweep takes.
Gives sweep_vs_separate_runs and compiles_per_sweep.
Run through experiments/bench/run.py; metrics: experiments/bench/BENCHMARKS.md.
"""

from __future__ import annotations

import dataclasses

import jax

from experiments.bench.models import Context, log, median, timed


def _sweep_rows(ctx: Context, n_prompts: int):
  from decode.core.policy import parse_policy
  from experiments.sweep.grid import ModelEntry, expand_grid
  from experiments.tasks.datasets import Problem

  p = ctx.preset
  probs, texts = [], {}
  for i, ids in enumerate(ctx.prompts[:n_prompts]):
    pid = f"bench/{i}"
    probs.append(Problem(pid, ctx.tokenizer.decode(ids), "0", None, "bench"))
    texts[pid] = probs[-1].question
  policies = [parse_policy(f"step:{k}") for k in range(1, p.sweep_timings + 1)]
  return expand_grid(
    "bench", probs, texts, [ModelEntry("student", str(ctx.student_dir))], "teacher", policies, [0]
  )


def bench_sweep(ctx: Context, result: dict) -> None:
  """An 8-timing sweep in fork mode vs the same rows as 8 plain calls (fork=False), one decoder."""
  from decode.host.guided import GuidedDecoder
  from experiments.sweep.runner import DecodeSettings, SweepRunner
  from experiments.sweep.store import ResultsStore

  p = ctx.preset
  for ids in ctx.prompts[: p.sweep_prompts]:
    if ctx.roundtrip(ids) != ids:
      raise RuntimeError("benchmark tokenizer does not round-trip the prompts")
  settings = DecodeSettings(batch_size=p.sweep_batch, max_len=ctx.max_len, max_new_tokens=p.max_new_tokens)
  jax.clear_caches()  # decoders share compiled loops; start cold so the first sweep shows its compiles
  dec = GuidedDecoder(
    ctx.student, ctx.teacher
  )  # fresh: its first sweep shows how many compiles a sweep takes
  tmp = ctx.student_dir.parent / "sweep_stores"  # inside setup's temporary directory: removed at the end
  rows = _sweep_rows(ctx, p.sweep_prompts)

  def sweep(fork: bool, name: str, settings=settings):
    runner = SweepRunner(dec, ResultsStore(tmp / f"{name}.jsonl"), settings, fork=fork, progress=False)
    runner.run(rows)
    return runner

  # First sweep of the fresh decoder (untimed): the same rows, buffer and batch shapes, fork mode, but
  # only a few new tokens per row (max_new_tokens is traced data, so it is the same compiled program).
  short = dataclasses.replace(settings, max_new_tokens=p.warmup_sweep_new_tokens)
  warm_s, warm = timed(lambda: sweep(True, "warm", short))
  compiles_per_sweep = dec.compiles
  log(
    f"sweep: fresh decoder's first fork sweep ({len(rows)} rows, {p.warmup_sweep_new_tokens} new tokens, "
    f"{warm.loop_calls} loop calls) {warm_s:.1f}s, {compiles_per_sweep} compile(s)"
  )
  times = {"fork": [], "separate": []}
  runners = {}
  for r in range(p.sweep_repeats):
    for mode in ("fork", "separate"):
      dt, runners[mode] = timed(lambda: sweep(mode == "fork", f"{mode}{r}"))
      times[mode].append(dt)
      log(f"sweep {mode} ({len(rows)} rows): {dt:.1f}s, {runners[mode].loop_calls} loop calls")
  fork_store = runners["fork"].store.rows
  sep_store = runners["separate"].store.rows
  equal = fork_store.keys() == sep_store.keys() and all(
    fork_store[k]["token_ids"] == sep_store[k]["token_ids"] for k in fork_store
  )
  modes = {}
  for rec in fork_store.values():
    modes[rec["mode"]] = modes.get(rec["mode"], 0) + 1
  t_fork, t_sep = median(times["fork"]), median(times["separate"])
  result.update(
    {
      "sweep_vs_separate_runs": t_fork / t_sep,
      "compiles_per_sweep": compiles_per_sweep,
      "compiles_during_timed_sweeps": dec.compiles - compiles_per_sweep,
      "sweep_fork_s": t_fork,
      "sweep_separate_s": t_sep,
      "sweep_times_s": times,
      "sweep_rows": len(rows),
      "sweep_prompts": p.sweep_prompts,
      "sweep_batch": p.sweep_batch,
      "sweep_timings": p.sweep_timings,
      "sweep_loop_calls": {m: r.loop_calls for m, r in runners.items()},
      "sweep_fork_row_modes": modes,
      "sweep_fork_equals_separate": equal,
      "sweep_first_fork_sweep_with_compile_s": warm_s,
      "sweep_compile_note": (
        f"compiles_per_sweep = traces of a fresh GuidedDecoder during its first fork sweep "
        f"(untimed; same rows and shapes, {p.warmup_sweep_new_tokens} new tokens per row); "
        "compiles_during_timed_sweeps = traces added by the timed fork and separate sweeps"
      ),
    }
  )
  log(
    f"sweep: fork {t_fork:.1f}s vs separate {t_sep:.1f}s -> {t_fork / t_sep:.2f}; fork == separate: {equal}"
  )

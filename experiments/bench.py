"""Benchmarks of the guided decode loop against Hugging Face `generate` on the same weights (issue 7).

  python -m experiments.bench [--quick] [--out FILE.json]

Everything runs in one process on random models built here (experiments/bench_models.py): a ~34M
Llama student and a ~208M Llama teacher (~6x) sharing a WordLevel tokenizer in which every 20th
token ends with "\\n", so greedy steps end about every 20 tokens. Each measurement is warmed up
first (the warm-up call compiles on the timed shapes: same batch and buffer length, fewer new
tokens), then repeated; medians are reported and compile time is excluded. Ratios whose two sides
are timed in the same section are measured interleaved (A, B, A, B, ...) so a shared machine's
drift hits both sides alike. Progress goes to stderr; the LAST line of stdout is the JSON result.

Metrics and targets: experiments/BENCHMARKS.md.
"""
from __future__ import annotations

import os

# Must precede the first `import torch`: with OpenMP's default (spinning) wait policy, torch's
# threads collapse when another process shares the cores (measured here: 2 threads at 4-12 tok/s
# vs 40-46 tok/s with PASSIVE, on the same model). JAX's CPU thread pool does not use OpenMP.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import argparse
import concurrent.futures
import dataclasses
import datetime
import json
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable

import numpy as np

from experiments import bench_models as bm

TARGETS = {
    "decode_speedup_vs_hf_b1": (">=", 1.1),
    "decode_speedup_vs_hf_b16": (">=", 1.0),
    "guided_speedup_vs_hf_orchestration": (">=", 3.0),
    "guided_never_overhead": ("<=", 1.10),
    "first_step_vs_lockstep": ("<=", 0.5),
    "sweep_vs_separate_runs": ("<=", 0.6),
    "compiles_per_sweep": ("==", 1),
}
REQUIRED_KEYS = tuple(TARGETS) + ("decode_roofline_fraction_b1", "greedy_match_b1")


@dataclasses.dataclass(frozen=True)
class Preset:
  name: str
  pair: bm.PairSpec
  prompt_len: int = 64
  max_new_tokens: int = 128
  batch: int = 16
  decode_repeats: int = 5       # timed runs per decode measurement (median reported)
  guided_repeats: int = 3       # timed runs per guided measurement
  hf_orchestration_rows: int = 16  # rows timed for the HF per-row baseline (scaled to `batch`)
  sweep_prompts: int = 16
  sweep_batch: int = 16         # rows per loop call in the sweep (8 separate runs = 8 calls when == prompts)
  sweep_timings: int = 8
  sweep_repeats: int = 2
  warmup_sweep_new_tokens: int = 8  # the fresh decoder's first (compiling) fork sweep: same shapes, short
  membw_mb: int = 512
  membw_repeats: int = 5


PRESETS = {
    "full": Preset("full", bm.FULL),
    # Aims at < 5 min on 2 cores: fewer repeats, HF orchestration timed on 4 rows (scaled per row), and
    # the sweep on 4 prompts x 8 timings in batches of 4 (full: 16 prompts in batches of 16). The
    # sweep's cost is mostly its number of loop calls (fork: 1 base + ~7 forked, separate: 8), and a
    # call's cost shrinks much less than its batch on this CPU (the teacher is weight-read bound).
    "quick": Preset("quick", bm.FULL, decode_repeats=2, guided_repeats=1, hf_orchestration_rows=4,
                    sweep_prompts=4, sweep_batch=4, sweep_repeats=1, membw_repeats=3),
    # Smoke-test size (tests/test_bench.py): every code path, seconds not minutes. Not a benchmark.
    "tiny": Preset("tiny", bm.TINY, prompt_len=8, max_new_tokens=24, decode_repeats=1, guided_repeats=1,
                   hf_orchestration_rows=2, sweep_prompts=4, sweep_batch=4, sweep_repeats=1,
                   membw_mb=16, membw_repeats=2),
}


def log(msg: str) -> None:
  print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def median(xs) -> float:
  return float(statistics.median(xs))


def timed(fn: Callable[[], object]) -> tuple[float, object]:
  t0 = time.perf_counter()
  out = fn()
  return time.perf_counter() - t0, out


def interleaved(fns: dict[str, Callable[[], object]], repeats: int) -> tuple[dict[str, list[float]], dict]:
  """Runs each fn once per round, round after round; returns times and each fn's last output."""
  times = {k: [] for k in fns}
  outs = {}
  for _ in range(repeats):
    for k, fn in fns.items():
      dt, outs[k] = timed(fn)
      times[k].append(dt)
  return times, outs


# -- machine ----------------------------------------------------------------------------------------
def cpu_count() -> int:
  try:
    return len(os.sched_getaffinity(0))
  except AttributeError:
    return os.cpu_count() or 1


def cpu_model() -> str:
  try:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
      if line.startswith("model name"):
        return line.split(":", 1)[1].strip()
  except OSError:
    pass
  return platform.processor() or platform.machine()


def memory_bandwidth(size_mb: int, repeats: int, threads: int) -> dict:
  """Bytes read + written per second by numpy copies of a size_mb float32 array (median of repeats),
  with one thread and with `threads` threads each copying a slice; the roofline uses the larger."""
  n = size_mb * 2 ** 20 // 4
  src = np.ones(n, np.float32)
  dst = np.zeros(n, np.float32)
  np.copyto(dst, src)  # first touch
  moved = 2 * src.nbytes

  def one():
    t0 = time.perf_counter()
    np.copyto(dst, src)
    return time.perf_counter() - t0

  bounds = np.linspace(0, n, threads + 1).astype(int)
  pool = concurrent.futures.ThreadPoolExecutor(threads)

  def many():
    t0 = time.perf_counter()
    list(pool.map(lambda i: np.copyto(dst[bounds[i]:bounds[i + 1]], src[bounds[i]:bounds[i + 1]]), range(threads)))
    return time.perf_counter() - t0

  t_one = [one() for _ in range(repeats)]
  t_many = [many() for _ in range(repeats)]
  pool.shutdown()
  single, multi = moved / median(t_one), moved / median(t_many)
  best = moved / min(t_one + t_many)  # other tenants only ever lower it: the least disturbed copy
  return {"membw_1thread_GBps": single / 1e9, f"membw_{threads}threads_GBps": multi / 1e9,
          "membw_GBps": max(single, multi) / 1e9, "membw_best_GBps": best / 1e9, "membw_array_MB": size_mb}


# -- HF side ----------------------------------------------------------------------------------------
class DelimiterStop:
  """StoppingCriteria: a row is done once its last token is a step delimiter (same id set as ours)."""

  def __init__(self, ids):
    import torch
    self.ids = torch.as_tensor(sorted(ids), dtype=torch.long)

  def __call__(self, input_ids, scores, **kwargs):
    import torch
    return torch.isin(input_ids[:, -1], self.ids)


def hf_greedy(model, prompts: list[list[int]], new_tokens: int):
  """HF generate, greedy, exactly `new_tokens` new tokens per row (EOS cannot stop it early)."""
  import torch
  x = torch.tensor(prompts, dtype=torch.long)
  with torch.no_grad():
    out = model.generate(input_ids=x, attention_mask=torch.ones_like(x), do_sample=False,
                         max_new_tokens=new_tokens, min_new_tokens=new_tokens, pad_token_id=bm.PAD_ID)
  return out[:, x.shape[1]:].tolist()


def hf_orchestration(student, teacher, prompt: list[int], new_tokens: int, stop) -> tuple[list[int], int]:
  """What a user without this codebase does per row: the teacher writes step 1 (generate until a
  delimiter), then the student generates the rest from prompt + teacher step (ids concatenated;
  with this tokenizer that equals decoding and re-encoding the text). Returns (new ids, step length)."""
  import torch
  from transformers import StoppingCriteriaList
  x = torch.tensor([prompt], dtype=torch.long)
  with torch.no_grad():
    t_out = teacher.generate(input_ids=x, attention_mask=torch.ones_like(x), do_sample=False,
                             max_new_tokens=new_tokens, stopping_criteria=StoppingCriteriaList([stop]),
                             pad_token_id=bm.PAD_ID)
    step = t_out.shape[1] - x.shape[1]
    rest = new_tokens - step
    if rest > 0:
      s_out = student.generate(input_ids=t_out, attention_mask=torch.ones_like(t_out), do_sample=False,
                               max_new_tokens=rest, min_new_tokens=rest, pad_token_id=bm.PAD_ID)
    else:
      s_out = t_out
  return s_out[0, x.shape[1]:].tolist(), step


# -- benchmark ---------------------------------------------------------------------------------------
@dataclasses.dataclass
class Context:
  preset: Preset
  student: object      # our LanguageModel
  teacher: object
  hf_student: object   # torch models loaded with from_pretrained from the same dirs
  hf_teacher: object
  tokenizer: object
  student_dir: Path
  teacher_dir: Path
  prompts: list[list[int]]  # batch x prompt_len
  max_len: int

  def roundtrip(self, ids: list[int]) -> list[int]:
    """ids -> text -> ids, the way the sweep runner encodes its prompts."""
    return self.tokenizer(self.tokenizer.decode(ids), add_special_tokens=True)["input_ids"]


def _param_bytes(params) -> int:
  import jax
  return int(sum(x.size * x.dtype.itemsize for x in jax.tree.leaves(params)))


def bench_decode(ctx: Context, result: dict) -> None:
  """Student-only greedy decode, ours vs HF generate, batch 1 and batch `batch`."""
  from decode.guided import GuidedDecoder
  p = ctx.preset
  dec = GuidedDecoder(ctx.student, None)
  for b in (1, p.batch):
    prompts = ctx.prompts[:b]
    ours = lambda: dec.generate(prompts, "never", max_new_tokens=p.max_new_tokens, max_len=ctx.max_len)
    hf = lambda: hf_greedy(ctx.hf_student, prompts, p.max_new_tokens)
    warm_s, _ = timed(lambda: dec.generate(prompts, "never", max_new_tokens=2, max_len=ctx.max_len))
    c0 = dec.compiles
    hf_greedy(ctx.hf_student, prompts, 2)
    log(f"decode b{b}: warm-up (compile) {warm_s:.1f}s; timing {p.decode_repeats}x ours and HF interleaved")
    times, outs = interleaved({"ours": ours, "hf": hf}, p.decode_repeats)
    ours_rows, hf_rows = outs["ours"], outs["hf"]
    ours_tokens = [len(r.token_ids) for r in ours_rows]
    hf_tokens = [len(r) for r in hf_rows]
    if set(ours_tokens) != {p.max_new_tokens} or set(hf_tokens) != {p.max_new_tokens}:
      raise RuntimeError(f"rows stopped early (ours {ours_tokens}, HF {hf_tokens}): EOS was emitted")
    n_tok = b * p.max_new_tokens
    t_ours, t_hf = median(times["ours"]), median(times["hf"])
    match = [r.token_ids == h for r, h in zip(ours_rows, hf_rows)]
    result.update({
        f"ours_b{b}_s": t_ours, f"hf_b{b}_s": t_hf, f"ours_b{b}_tokens_per_s": n_tok / t_ours,
        f"hf_b{b}_tokens_per_s": n_tok / t_hf, f"decode_speedup_vs_hf_b{b}": t_hf / t_ours,
        f"ours_b{b}_times_s": times["ours"], f"hf_b{b}_times_s": times["hf"],
        f"ours_b{b}_compile_and_warmup_s": warm_s, f"tokens_per_row_b{b}": p.max_new_tokens,
        f"greedy_match_rows_b{b}": f"{sum(match)}/{len(match)}", f"compiles_during_timing_b{b}": dec.compiles - c0,
    })
    if b == 1:
      result["greedy_match_b1"] = bool(match[0])
    log(f"decode b{b}: ours {n_tok / t_ours:.1f} tok/s, HF {n_tok / t_hf:.1f} tok/s, "
        f"speedup {t_hf / t_ours:.2f}, greedy match {sum(match)}/{len(match)}")

  # Roofline at batch 1: every decode step must read all params and the valid KV cache once.
  result["hf_attn_implementation"] = getattr(ctx.hf_student.config, "_attn_implementation", None)
  cfg = ctx.student.cfg
  param_bytes = _param_bytes(ctx.student.params)
  kv_per_pos = 2 * cfg.num_layers * cfg.num_kv_heads * cfg.head_dim * np.dtype(cfg.dtype).itemsize
  mean_ctx = p.prompt_len + (p.max_new_tokens + 1) / 2  # positions attended, averaged over the steps
  bytes_per_token = param_bytes + kv_per_pos * mean_ctx
  bw = memory_bandwidth(p.membw_mb, p.membw_repeats, cpu_count())
  result.update(bw)
  roofline = bw["membw_GBps"] * 1e9 / bytes_per_token
  result.update({
      "student_param_bytes": param_bytes, "student_kv_bytes_per_token_mean": kv_per_pos * mean_ctx,
      "student_kv_bytes_per_token_our_loop_reads": kv_per_pos * ctx.max_len,
      "decode_bytes_per_token_b1": bytes_per_token, "roofline_tokens_per_s_b1": roofline,
      "decode_roofline_fraction_b1": result["ours_b1_tokens_per_s"] / roofline,
      # Same with the best single copy instead of the median (a shared machine's bandwidth swings).
      "decode_roofline_fraction_b1_best_bw": (result["ours_b1_tokens_per_s"] * bytes_per_token
                                              / (bw["membw_best_GBps"] * 1e9)),
  })
  log(f"roofline b1: {bw['membw_GBps']:.1f} GB/s / {bytes_per_token / 1e6:.1f} MB per token = "
      f"{roofline:.1f} tok/s; ours at {result['decode_roofline_fraction_b1']:.2f}")
  result["_student_only_decoder"] = dec


def bench_guided(ctx: Context, result: dict) -> None:
  """Teacher writes step 1 then the student continues: ours (lazy and lockstep) vs HF per row."""
  from decode.guided import GuidedDecoder
  p = ctx.preset
  prompts = ctx.prompts[:p.batch]
  lazy = GuidedDecoder(ctx.student, ctx.teacher)
  lock = GuidedDecoder(ctx.student, ctx.teacher, lockstep=True)
  solo = result.pop("_student_only_decoder", None) or GuidedDecoder(ctx.student, None)
  gen = lambda dec, pol, n=p.max_new_tokens: (lambda: dec.generate(prompts, pol, max_new_tokens=n,
                                                                   max_len=ctx.max_len))
  warm = {}
  for name, dec, pol in (("lazy", lazy, "step:1"), ("lockstep", lock, "step:1"), ("student_only", solo, "never")):
    warm[name], _ = timed(gen(dec, pol, 2))
  compiles0 = (lazy.compiles, lock.compiles, solo.compiles)
  log(f"guided: warm-ups (compile) {', '.join(f'{k} {v:.1f}s' for k, v in warm.items())}")

  stats = {}

  def with_stats(name, dec, pol):
    run = gen(dec, pol)

    def fn():
      out = run()
      stats[name] = dec.last_stats
      return out
    return fn

  times, outs = interleaved({"step1_lazy": with_stats("lazy", lazy, "step:1"),
                             "never_with_teacher": with_stats("never", lazy, "never"),
                             "never_student_only": gen(solo, "never")}, p.guided_repeats)
  lock_times, lock_outs = interleaved({"step1_lockstep": with_stats("lockstep", lock, "step:1")}, p.guided_repeats)
  times.update(lock_times)
  outs.update(lock_outs)
  recompiled = (lazy.compiles, lock.compiles, solo.compiles) != compiles0
  ours_rows = outs["step1_lazy"]
  for k, rows in outs.items():
    if {len(r.token_ids) for r in rows} != {p.max_new_tokens}:
      raise RuntimeError(f"guided {k}: rows stopped early: {[len(r.token_ids) for r in rows]}")
  t = {k: median(v) for k, v in times.items()}
  step_lens = [r.teacher_tokens for r in ours_rows]
  log(f"guided ours: step:1 lazy {t['step1_lazy']:.2f}s, lockstep {t['step1_lockstep']:.2f}s, never+teacher "
      f"{t['never_with_teacher']:.2f}s, never student-only {t['never_student_only']:.2f}s; teacher step lengths "
      f"{step_lens}")

  # HF baseline, per row, on the first hf_orchestration_rows prompts; scaled per row to the batch.
  n_rows = min(p.hf_orchestration_rows, len(prompts))
  stop = DelimiterStop(np.flatnonzero(lazy.masks.delimiter).tolist())
  hf_orchestration(ctx.hf_student, ctx.hf_teacher, prompts[0], 2, stop)  # warm-up
  t0 = time.perf_counter()
  hf_rows = [hf_orchestration(ctx.hf_student, ctx.hf_teacher, q, p.max_new_tokens, stop) for q in prompts[:n_rows]]
  hf_s = time.perf_counter() - t0
  if {len(r) for r, _ in hf_rows} != {p.max_new_tokens}:
    raise RuntimeError(f"HF orchestration rows stopped early: {[len(r) for r, _ in hf_rows]}")
  hf_per_row = hf_s / n_rows
  hf_scaled = hf_per_row * len(prompts)
  match = sum(r.token_ids == h for r, (h, _) in zip(ours_rows, hf_rows))
  log(f"guided HF orchestration: {hf_s:.1f}s for {n_rows} rows ({hf_per_row:.2f}s/row) -> {hf_scaled:.1f}s for "
      f"{len(prompts)}; ours {t['step1_lazy']:.2f}s; outputs match {match}/{n_rows}")

  result.update({
      "guided_speedup_vs_hf_orchestration": hf_scaled / t["step1_lazy"],
      "guided_never_overhead": t["never_with_teacher"] / t["never_student_only"],
      "first_step_vs_lockstep": t["step1_lazy"] / t["step1_lockstep"],
      "guided_step1_s": t["step1_lazy"], "guided_step1_lockstep_s": t["step1_lockstep"],
      "guided_never_with_teacher_s": t["never_with_teacher"], "guided_never_student_only_s": t["never_student_only"],
      "guided_times_s": times, "guided_compile_and_warmup_s": warm,
      "guided_step1_tokens_per_s": len(prompts) * p.max_new_tokens / t["step1_lazy"],
      "guided_teacher_step1_tokens_per_row": step_lens,
      "guided_teacher_calls": {k: v.teacher_calls for k, v in stats.items()},
      "guided_loop_iterations": {k: v.iterations for k, v in stats.items()},
      "guided_lockstep_outputs_equal_lazy": all(a.token_ids == b.token_ids
                                                for a, b in zip(ours_rows, outs["step1_lockstep"])),
      "guided_recompiled_during_timing": recompiled,
      "hf_orchestration_s_timed": hf_s, "hf_orchestration_rows_timed": n_rows,
      "hf_orchestration_s_per_row": hf_per_row, "hf_orchestration_s_scaled": hf_scaled,
      "hf_orchestration_scaled_to_rows": len(prompts),
      "hf_orchestration_note": (f"HF timed on {n_rows} of {len(prompts)} rows, one pass after a warm-up; "
                                f"per-row time x {len(prompts)}"),
      "hf_teacher_step1_tokens_per_row": [s for _, s in hf_rows],
      "guided_outputs_match_hf_rows": f"{match}/{n_rows}",
  })


def _sweep_rows(ctx: Context, n_prompts: int):
  from decode.policy import parse_policy
  from experiments.grid import ModelEntry, expand_grid
  from experiments.tasks import Problem
  p = ctx.preset
  probs, texts = [], {}
  for i, ids in enumerate(ctx.prompts[:n_prompts]):
    pid = f"bench/{i}"
    probs.append(Problem(pid, ctx.tokenizer.decode(ids), "0", None, "bench"))
    texts[pid] = probs[-1].question
  policies = [parse_policy(f"step:{k}") for k in range(1, p.sweep_timings + 1)]
  return expand_grid("bench", probs, texts, [ModelEntry("student", str(ctx.student_dir))], "teacher",
                     policies, [0])


def bench_sweep(ctx: Context, result: dict) -> None:
  """An 8-timing sweep in fork mode vs the same rows as 8 plain calls (fork=False), one decoder."""
  from decode.guided import GuidedDecoder
  from experiments.results_store import ResultsStore
  from experiments.runner import DecodeSettings, SweepRunner
  p = ctx.preset
  for ids in ctx.prompts[:p.sweep_prompts]:
    if ctx.roundtrip(ids) != ids:
      raise RuntimeError("benchmark tokenizer does not round-trip the prompts")
  settings = DecodeSettings(batch_size=p.sweep_batch, max_len=ctx.max_len, max_new_tokens=p.max_new_tokens)
  dec = GuidedDecoder(ctx.student, ctx.teacher)  # fresh: its first sweep shows how many compiles a sweep takes
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
  log(f"sweep: fresh decoder's first fork sweep ({len(rows)} rows, {p.warmup_sweep_new_tokens} new tokens, "
      f"{warm.loop_calls} loop calls) {warm_s:.1f}s, {compiles_per_sweep} compile(s)")
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
      fork_store[k]["token_ids"] == sep_store[k]["token_ids"] for k in fork_store)
  modes = {}
  for rec in fork_store.values():
    modes[rec["mode"]] = modes.get(rec["mode"], 0) + 1
  t_fork, t_sep = median(times["fork"]), median(times["separate"])
  result.update({
      "sweep_vs_separate_runs": t_fork / t_sep, "compiles_per_sweep": compiles_per_sweep,
      "compiles_during_timed_sweeps": dec.compiles - compiles_per_sweep,
      "sweep_fork_s": t_fork, "sweep_separate_s": t_sep, "sweep_times_s": times,
      "sweep_rows": len(rows), "sweep_prompts": p.sweep_prompts, "sweep_batch": p.sweep_batch,
      "sweep_timings": p.sweep_timings,
      "sweep_loop_calls": {m: r.loop_calls for m, r in runners.items()}, "sweep_fork_row_modes": modes,
      "sweep_fork_equals_separate": equal, "sweep_first_fork_sweep_with_compile_s": warm_s,
      "sweep_compile_note": (f"compiles_per_sweep = traces of a fresh GuidedDecoder during its first fork sweep "
                             f"(untimed; same rows and shapes, {p.warmup_sweep_new_tokens} new tokens per row); "
                             "compiles_during_timed_sweeps = traces added by the timed fork and separate sweeps"),
  })
  log(f"sweep: fork {t_fork:.1f}s vs separate {t_sep:.1f}s -> {t_fork / t_sep:.2f}; fork == separate: {equal}")


def setup(preset: Preset, root: Path) -> Context:
  import jax
  import torch
  import transformers
  from decode.guided import _round_up
  from model.hf_import import load_model

  transformers.logging.set_verbosity_error()
  transformers.utils.logging.disable_progress_bar()
  p = preset
  t0 = time.perf_counter()
  s_dir, t_dir, torch_s, torch_t, tok = bm.make_pair(root, p.pair, seed=0)
  del torch_s, torch_t
  student, teacher = load_model(s_dir), load_model(t_dir)
  hf_s = transformers.AutoModelForCausalLM.from_pretrained(str(s_dir), dtype=torch.float32).eval()
  hf_t = transformers.AutoModelForCausalLM.from_pretrained(str(t_dir), dtype=torch.float32).eval()
  prompts = bm.random_prompts(max(p.batch, p.sweep_prompts), p.prompt_len, p.pair.vocab_size, seed=1)
  max_len = _round_up(p.prompt_len + p.max_new_tokens, 64)
  log(f"setup: models built, saved and loaded in {time.perf_counter() - t0:.1f}s "
      f"(jax {jax.__version__}, torch {torch.__version__}, {torch.get_num_threads()} torch threads)")
  return Context(preset=p, student=student, teacher=teacher, hf_student=hf_s, hf_teacher=hf_t, tokenizer=tok,
                 student_dir=s_dir, teacher_dir=t_dir, prompts=prompts, max_len=max_len)


def run_benchmark(preset: Preset | str, sections=("decode", "guided", "sweep"), command: str | None = None) -> dict:
  """Runs the benchmark in this process and returns the result dict (JSON-ready)."""
  if isinstance(preset, str):
    preset = PRESETS[preset]
  import jax
  import torch
  import transformers

  threads = cpu_count()
  torch.set_num_threads(threads)  # XLA's CPU client also uses one thread per available core
  t_start = time.perf_counter()
  result: dict = {
      "preset": preset.name,
      "command": command or " ".join([Path(sys.executable).name, "-m", "experiments.bench", *sys.argv[1:]]),
      "date": datetime.date.today().isoformat(),
      "device": f"{jax.devices()[0].platform}: {cpu_model()}, {threads} cores available, {os.cpu_count()} in machine",
      "jax_version": jax.__version__, "jaxlib_version": getattr(jax.lib, "__version__", None) or jax.__version__,
      "torch_version": torch.__version__, "transformers_version": transformers.__version__,
      "python": platform.python_version(),
      "threads": {"jax_xla_cpu": threads, "torch": torch.get_num_threads(),
                  "OMP_WAIT_POLICY": os.environ.get("OMP_WAIT_POLICY")},
      "loadavg_start": os.getloadavg(),
      "student_params": preset.pair.student.num_params(preset.pair.vocab_size),
      "teacher_params": preset.pair.teacher.num_params(preset.pair.vocab_size),
      "prompt_len": preset.prompt_len, "max_new_tokens": preset.max_new_tokens, "batch": preset.batch,
      "repeats": {"decode": preset.decode_repeats, "guided": preset.guided_repeats, "sweep": preset.sweep_repeats},
      "dtype": "float32",
      "preset_note": {
          "full": "all measurements at full size: 16 prompts everywhere, medians of several interleaved runs",
          "quick": ("fewer repeats (decode 2, guided 1, sweep 1); HF orchestration timed on 4 rows and scaled "
                    "per row to 16; sweep on 4 prompts x 8 timings in batches of 4 (full: 16 in batches of 16)"),
          "tiny": "smoke-test sizes; numbers mean nothing",
      }[preset.name],
  }
  with tempfile.TemporaryDirectory(prefix="bench_models_") as root:
    ctx = setup(preset, Path(root))
    result["buffer_len"] = ctx.max_len
    if "decode" in sections:
      bench_decode(ctx, result)
    if "guided" in sections:
      bench_guided(ctx, result)
    if "sweep" in sections:
      bench_sweep(ctx, result)
  result.pop("_student_only_decoder", None)
  result["loadavg_end"] = os.getloadavg()
  result["wall_s"] = time.perf_counter() - t_start
  result["targets"] = {k: f"{op} {v}" for k, (op, v) in TARGETS.items()}
  result["meets_target"] = {k: _meets(result[k], op, v) for k, (op, v) in TARGETS.items() if k in result}
  return result


def _meets(x, op: str, v) -> bool:
  return {"<=": x <= v, ">=": x >= v, "==": x == v}[op]


def main(argv=None) -> None:
  ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  ap.add_argument("--quick", action="store_true",
                  help="fewer repeats, HF orchestration on 4 rows, sweep on 4 prompts (< 5 min)")
  ap.add_argument("--size", choices=sorted(PRESETS), default=None,
                  help="preset (default: full, or quick with --quick; tiny = smoke-test sizes, not a benchmark)")
  ap.add_argument("--only", default="decode,guided,sweep", help="comma-separated sections to run")
  ap.add_argument("--out", type=Path, default=None, help="also write the JSON to this file")
  args = ap.parse_args(argv)
  preset = args.size or ("quick" if args.quick else "full")
  result = run_benchmark(preset, sections=tuple(s.strip() for s in args.only.split(",") if s.strip()))
  text = json.dumps(result, sort_keys=True)
  if args.out:
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2, sort_keys=True) + "\n")
  print(text, flush=True)


if __name__ == "__main__":
  main()

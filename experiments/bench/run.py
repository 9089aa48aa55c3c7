"""Benchmarks of the guided decode loop against Hugging Face `generate` on the same weights (issue 7).

  python -m experiments.bench [--quick] [--out FILE.json]

Everything runs in one process on random models built here (experiments/bench_models.py): a ~34M
Llama student and a ~208M Llama teacher (~6x) sharing a WordLevel tokenizer in which every 20th
token ends with "\\n", so greedy steps end about every 20 tokens. Each measurement is warmed up
first (the warm-up call compiles on the timed shapes: same batch and buffer length, fewer new
tokens), then repeated; medians are reported and compile time is excluded. Ratios whose two sides
are timed in the same section are measured interleaved (A, B, A, B, ...) so a shared machine's
drift hits both sides alike. Progress goes to stderr; the LAST line of stdout is the JSON result.

Metrics and targets: experiments/bench/BENCHMARKS.md.
"""

from __future__ import annotations

# OpenMP's wait policy is left to the caller: torch's default (spinning) threads are ~2x faster at
# batch 1 on a quiet machine (measured: HF 116 vs 60 tok/s with OMP_WAIT_POLICY=PASSIVE), so
# forcing PASSIVE would flatter our ratios; on a machine shared with other jobs, spinning threads
# collapse instead, and `OMP_WAIT_POLICY=PASSIVE python -m experiments.bench` is the fairer run.
# The JSON records the policy in effect. JAX's CPU thread pool does not use OpenMP.
import argparse
import dataclasses
import datetime
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

from experiments.bench import models as bm
from experiments.bench.bridge import bench_bridge
from experiments.bench.decode import bench_decode
from experiments.bench.guided import bench_guided
from experiments.bench.load import TARGETS as LOAD_TARGETS
from experiments.bench.load import bench_load
from experiments.bench.models import cpu_count, cpu_model, setup
from experiments.bench.pod import TARGETS as POD_TARGETS
from experiments.bench.pod import bench_pod
from experiments.bench.realsize import (
  bench_compile_depth,
  bench_fewshot_sweep,
  bench_realsize_decode,
  bench_scan_decode,
)
from experiments.bench.stops import bench_stops
from experiments.bench.sweep import bench_sweep
from model.startup_logs import add_verbose_flag, quiet_startup_logs

TARGETS = {
  "decode_speedup_vs_hf_b1": (">=", 1.3),
  "decode_speedup_vs_hf_b16": (">=", 1.1),
  "decode_roofline_fraction_b1": (">=", 0.6),
  "guided_speedup_vs_hf_orchestration": (">=", 3.0),
  "guided_never_overhead": ("<=", 1.10),
  "first_step_vs_lockstep": ("<=", 0.5),
  "sweep_vs_separate_runs": ("<=", 0.6),
  "compiles_per_sweep": ("==", 1),
  "compile_depth_ratio": ("<=", 1.5),
  "fewshot_sweep_speedup": (">=", 1.8),
  "fewshot_outputs_equal": ("==", True),
  "bridge_fork_vs_plain": ("<=", 0.6),
  "bridge_fork_equals_plain": ("==", True),
  **LOAD_TARGETS,
  **POD_TARGETS,
}
REQUIRED_KEYS = tuple(TARGETS) + ("decode_roofline_fraction_b1", "greedy_match_b1")


@dataclasses.dataclass(frozen=True)
class Preset:
  name: str
  pair: bm.PairSpec
  prompt_len: int = 64
  max_new_tokens: int = 128
  batch: int = 16
  decode_repeats: int = 5  # timed runs per decode measurement (median reported)
  guided_repeats: int = 3  # timed runs per guided measurement
  hf_orchestration_rows: int = 16  # rows timed for the HF per-row baseline (scaled to `batch`)
  sweep_prompts: int = 16
  sweep_batch: int = 16  # rows per loop call in the sweep (8 separate runs = 8 calls when == prompts)
  sweep_timings: int = 8
  sweep_repeats: int = 2
  warmup_sweep_new_tokens: int = 8  # the fresh decoder's first (compiling) fork sweep: same shapes, short
  membw_mb: int = 512
  membw_repeats: int = 5
  fewshot_new_tokens: int = 128  # realsize: new tokens per row of the few-shot fork sweep
  fewshot_repeats: int = 2
  # realsize: (tokens per exemplar of the shared 4-shot block, tokens of each problem's own part), one
  # few-shot sweep each. The first sets `fewshot_sweep_speedup`: exemplars of GSM8K size (issue 11's
  # 2-shot chat prompts shared ~450 of ~540 tokens: ~225 per exemplar, ~90 per problem). The second
  # (full preset) is the previous round's short exemplars, reported as `..._shots96`.
  fewshot_prompts: tuple[tuple[int, int], ...] = ((224, 88), (96, 40))
  realsize_new_tokens: int = 64  # realsize: new tokens per row of the Qwen2.5-0.5B-width decode
  realsize_repeats: int = 3  # realsize: interleaved runs per side of that decode


PRESETS = {
  "full": Preset("full", bm.FULL),
  # ~3 min on 2 cores for decode, guided and sweep, ~6.5 min for realsize (its two few-shot sweeps of
  # 984-token prompts are most of it): fewer repeats, HF orchestration timed on 4 rows (scaled per row), and
  # the sweep on 4 prompts x 8 timings in batches of 4 (full: 16 prompts in batches of 16). The
  # sweep's cost is mostly its number of loop calls (fork: 1 base + ~7 forked, separate: 8), and a
  # call's cost shrinks much less than its batch on this CPU (the teacher's weight reads and the
  # longest row dominate; BENCHMARKS.md: ~6 s at batch 2 vs ~9 s at batch 4).
  "quick": Preset(
    "quick",
    bm.FULL,
    decode_repeats=2,
    guided_repeats=1,
    hf_orchestration_rows=4,
    sweep_prompts=4,
    sweep_batch=4,
    sweep_repeats=1,
    membw_repeats=3,
    fewshot_new_tokens=64,
    fewshot_repeats=1,
    fewshot_prompts=((224, 88),),
    realsize_new_tokens=32,
    realsize_repeats=2,
  ),
  # Smoke-test size (tests/test_bench.py): every code path, seconds not minutes. Not a benchmark.
  "tiny": Preset(
    "tiny",
    bm.TINY,
    prompt_len=8,
    max_new_tokens=24,
    decode_repeats=1,
    guided_repeats=1,
    hf_orchestration_rows=2,
    sweep_prompts=4,
    sweep_batch=4,
    sweep_repeats=1,
    membw_mb=16,
    membw_repeats=2,
    fewshot_new_tokens=12,
    fewshot_repeats=1,
    fewshot_prompts=((24, 6),),
    realsize_new_tokens=6,
    realsize_repeats=1,
  ),
}


SECTIONS = ("decode", "guided", "sweep", "realsize", "stops", "bridge", "load", "pod")


def run_benchmark(preset: Preset | str, sections=SECTIONS, command: str | None = None) -> dict:
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
    "jax_version": jax.__version__,
    "jaxlib_version": getattr(jax.lib, "__version__", None) or jax.__version__,
    "torch_version": torch.__version__,
    "transformers_version": transformers.__version__,
    "python": platform.python_version(),
    "threads": {
      "jax_xla_cpu": threads,
      "torch": torch.get_num_threads(),
      "OMP_WAIT_POLICY": os.environ.get("OMP_WAIT_POLICY"),
    },
    "loadavg_start": os.getloadavg(),
    "student_params": preset.pair.student.num_params(preset.pair.vocab_size),
    "teacher_params": preset.pair.teacher.num_params(preset.pair.vocab_size),
    "prompt_len": preset.prompt_len,
    "max_new_tokens": preset.max_new_tokens,
    "batch": preset.batch,
    "repeats": {
      "decode": preset.decode_repeats,
      "guided": preset.guided_repeats,
      "sweep": preset.sweep_repeats,
    },
    "dtype": "float32",
    "preset_note": {
      "full": "all measurements at full size: 16 prompts everywhere, medians of several interleaved runs",
      "quick": (
        "fewer repeats (decode 2, guided 1, sweep 1); HF orchestration timed on 4 rows and scaled "
        "per row to 16; sweep on 4 prompts x 8 timings in batches of 4 (full: 16 in batches of 16)"
      ),
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
    if "realsize" in sections:
      bench_compile_depth(result, full=preset.name == "full", tiny=preset.name == "tiny")
      bench_scan_decode(ctx, result)
      bench_fewshot_sweep(ctx, result)
      bench_realsize_decode(result, root, preset)
    if "stops" in sections and preset.name != "tiny":  # the demo's trained models: not smoke-test sized
      bench_stops(result, problems=48 if preset.name == "full" else 24, repeats=preset.sweep_repeats)
    if "bridge" in sections:
      bench_bridge(ctx, result)
    if "load" in sections:  # its own model, each load in a fresh process
      bench_load(preset.name, result)
    if "pod" in sections:  # plans in fresh processes (16 fake devices)
      bench_pod(preset.name, result)
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
  ap.add_argument(
    "--quick",
    action="store_true",
    help="fewer repeats, HF orchestration on 4 rows, sweep on 4 prompts (~10 min on 2 cores)",
  )
  ap.add_argument(
    "--size",
    choices=sorted(PRESETS),
    default=None,
    help="preset (default: full, or quick with --quick; tiny = smoke-test sizes, not a benchmark)",
  )
  ap.add_argument("--only", default=",".join(SECTIONS), help="comma-separated sections to run")
  ap.add_argument("--out", type=Path, default=None, help="also write the JSON to this file")
  add_verbose_flag(ap)
  args = ap.parse_args(argv)
  quiet_startup_logs(args.verbose)
  preset = args.size or ("quick" if args.quick else "full")
  result = run_benchmark(preset, sections=tuple(s.strip() for s in args.only.split(",") if s.strip()))
  text = json.dumps(result, sort_keys=True)
  if args.out:
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2, sort_keys=True) + "\n")
  print(text, flush=True)


if __name__ == "__main__":
  main()

"""Benchmark section `decode`: student-only greedy decode, ours vs HF `generate`, and its roofline.

Times `GuidedDecoder(student, None)` against HF `generate` on the same weights at batch 1 and batch
`batch` (interleaved), then divides our batch-1 tokens/s by a memory-bandwidth roofline: numpy copy
bandwidth over the bytes one decode step must read (all params + the valid KV cache).
Run through experiments/bench/run.py; metrics: experiments/bench/BENCHMARKS.md.
"""

from __future__ import annotations

import concurrent.futures
import time

import numpy as np

from decode.api import DecodeRequest
from experiments.bench import models as bm
from experiments.bench.models import Context, cpu_count, interleaved, log, median, timed


def memory_bandwidth(size_mb: int, repeats: int, threads: int) -> dict:
  """Bytes read + written per second by numpy copies of a size_mb float32 array (median of repeats),
  with one thread and with `threads` threads each copying a slice; the roofline uses the larger."""
  n = size_mb * 2**20 // 4
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
    list(
      pool.map(
        lambda i: np.copyto(dst[bounds[i] : bounds[i + 1]], src[bounds[i] : bounds[i + 1]]), range(threads)
      )
    )
    return time.perf_counter() - t0

  t_one = [one() for _ in range(repeats)]
  t_many = [many() for _ in range(repeats)]
  pool.shutdown()
  single, multi = moved / median(t_one), moved / median(t_many)
  best = moved / min(t_one + t_many)  # other tenants only ever lower it: the least disturbed copy
  return {
    "membw_1thread_GBps": single / 1e9,
    f"membw_{threads}threads_GBps": multi / 1e9,
    "membw_GBps": max(single, multi) / 1e9,
    "membw_best_GBps": best / 1e9,
    "membw_array_MB": size_mb,
  }


def hf_greedy(model, prompts: list[list[int]], new_tokens: int):
  """HF generate, greedy, exactly `new_tokens` new tokens per row (EOS cannot stop it early)."""
  import torch

  x = torch.tensor(prompts, dtype=torch.long)
  with torch.no_grad():
    out = model.generate(
      input_ids=x,
      attention_mask=torch.ones_like(x),
      do_sample=False,
      max_new_tokens=new_tokens,
      min_new_tokens=new_tokens,
      pad_token_id=bm.PAD_ID,
    )
  return out[:, x.shape[1] :].tolist()


def _param_bytes(params) -> int:
  import jax

  return int(sum(x.size * x.dtype.itemsize for x in jax.tree.leaves(params)))


def bench_decode(ctx: Context, result: dict) -> None:
  """Student-only greedy decode, ours vs HF generate, batch 1 and batch `batch`."""
  from decode.host.guided import GuidedDecoder

  p = ctx.preset
  dec = GuidedDecoder(ctx.student, None)
  for b in (1, p.batch):
    prompts = ctx.prompts[:b]
    ours = lambda: dec.generate(
      DecodeRequest(prompts, "never", max_new_tokens=p.max_new_tokens, max_len=ctx.max_len)
    )
    hf = lambda: hf_greedy(ctx.hf_student, prompts, p.max_new_tokens)
    warm_s, _ = timed(
      lambda: dec.generate(DecodeRequest(prompts, "never", max_new_tokens=2, max_len=ctx.max_len))
    )
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
    result.update(
      {
        f"ours_b{b}_s": t_ours,
        f"hf_b{b}_s": t_hf,
        f"ours_b{b}_tokens_per_s": n_tok / t_ours,
        f"hf_b{b}_tokens_per_s": n_tok / t_hf,
        f"decode_speedup_vs_hf_b{b}": t_hf / t_ours,
        f"ours_b{b}_times_s": times["ours"],
        f"hf_b{b}_times_s": times["hf"],
        f"ours_b{b}_compile_and_warmup_s": warm_s,
        f"tokens_per_row_b{b}": p.max_new_tokens,
        f"greedy_match_rows_b{b}": f"{sum(match)}/{len(match)}",
        f"compiles_during_timing_b{b}": dec.compiles - c0,
      }
    )
    if b == 1:
      result["greedy_match_b1"] = bool(match[0])
    log(
      f"decode b{b}: ours {n_tok / t_ours:.1f} tok/s, HF {n_tok / t_hf:.1f} tok/s, "
      f"speedup {t_hf / t_ours:.2f}, greedy match {sum(match)}/{len(match)}"
    )

  result["hf_attn_implementation"] = getattr(ctx.hf_student.config, "_attn_implementation", None)
  result["layer_params"] = "stacked" if ctx.student.cfg.stacked_params else "per_layer"
  result.update(decode_roofline(ctx.student, p.prompt_len, p.max_new_tokens, p.membw_mb, p.membw_repeats))
  result["student_kv_bytes_per_token_our_loop_reads"] = _kv_bytes_per_position(ctx.student.cfg) * ctx.max_len
  result["decode_roofline_fraction_b1"] = result["ours_b1_tokens_per_s"] / result["roofline_tokens_per_s_b1"]
  # Same with the best single copy instead of the median (a shared machine's bandwidth swings).
  result["decode_roofline_fraction_b1_best_bw"] = (
    result["ours_b1_tokens_per_s"] * result["decode_bytes_per_token_b1"] / (result["membw_best_GBps"] * 1e9)
  )
  log(
    f"roofline b1: {result['membw_GBps']:.1f} GB/s / {result['decode_bytes_per_token_b1'] / 1e6:.1f} MB "
    f"per token = {result['roofline_tokens_per_s_b1']:.1f} tok/s; ours at {result['decode_roofline_fraction_b1']:.2f}"
  )
  result["_student_only_decoder"] = dec


def _kv_bytes_per_position(cfg) -> int:
  return 2 * cfg.num_layers * cfg.num_kv_heads * cfg.head_dim * np.dtype(cfg.dtype).itemsize


def decode_roofline(lm, prompt_len: int, new_tokens: int, membw_mb: int, membw_repeats: int) -> dict:
  """The batch-1 decode roofline of `lm`: every step must read all params and the valid KV cache
  once; copy bandwidth (memory_bandwidth) over those bytes, averaged over the steps, is tokens/s."""
  param_bytes = _param_bytes(lm.params)
  kv_per_pos = _kv_bytes_per_position(lm.cfg)
  mean_ctx = prompt_len + (new_tokens + 1) / 2  # positions attended, averaged over the steps
  bytes_per_token = param_bytes + kv_per_pos * mean_ctx
  bw = memory_bandwidth(membw_mb, membw_repeats, cpu_count())
  return {
    **bw,
    "student_param_bytes": param_bytes,
    "student_kv_bytes_per_token_mean": kv_per_pos * mean_ctx,
    "decode_bytes_per_token_b1": bytes_per_token,
    "roofline_tokens_per_s_b1": bw["membw_GBps"] * 1e9 / bytes_per_token,
  }

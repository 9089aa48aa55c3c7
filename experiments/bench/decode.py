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


class CopyBandwidth:
  """Bytes read + written per second by numpy copies of a size_mb float32 array, with one thread and
  with `threads` threads each copying a slice; the roofline uses the larger. `sample` runs one copy
  of each, so a caller can interleave samples with what it divides by them (a shared machine's
  bandwidth drifts as much as its decode speed)."""

  def __init__(self, size_mb: int, threads: int):
    n = size_mb * 2**20 // 4
    self.size_mb, self.threads = size_mb, threads
    self.src, self.dst = np.ones(n, np.float32), np.zeros(n, np.float32)
    np.copyto(self.dst, self.src)  # first touch
    self.bounds = np.linspace(0, n, threads + 1).astype(int)
    self.pool = concurrent.futures.ThreadPoolExecutor(threads)
    self.t_one: list[float] = []
    self.t_many: list[float] = []

  def _slice(self, i: int) -> None:
    lo, hi = self.bounds[i], self.bounds[i + 1]
    np.copyto(self.dst[lo:hi], self.src[lo:hi])

  def sample(self) -> None:
    t0 = time.perf_counter()
    np.copyto(self.dst, self.src)
    t1 = time.perf_counter()
    list(self.pool.map(self._slice, range(self.threads)))
    t2 = time.perf_counter()
    self.t_one.append(t1 - t0)
    self.t_many.append(t2 - t1)

  def result(self) -> dict:
    self.pool.shutdown()
    moved = 2 * self.src.nbytes
    single, multi = moved / median(self.t_one), moved / median(self.t_many)
    best = moved / min(self.t_one + self.t_many)  # other tenants only ever lower it: the least disturbed copy
    return {
      "membw_1thread_GBps": single / 1e9,
      f"membw_{self.threads}threads_GBps": multi / 1e9,
      "membw_GBps": max(single, multi) / 1e9,
      "membw_best_GBps": best / 1e9,
      "membw_array_MB": self.size_mb,
      "membw_samples": len(self.t_one),
    }


def memory_bandwidth(size_mb: int, repeats: int, threads: int) -> dict:
  """CopyBandwidth's result over `repeats` samples taken back to back."""
  bw = CopyBandwidth(size_mb, threads)
  for _ in range(repeats):
    bw.sample()
  return bw.result()


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
  bw = CopyBandwidth(p.membw_mb, cpu_count())  # sampled between the batch-1 runs (the roofline's)
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
    fns = {"ours": ours, "hf": hf, **({"membw": lambda: [bw.sample() for _ in range(2)]} if b == 1 else {})}
    times, outs = interleaved(fns, max(p.decode_repeats, (p.membw_repeats + 1) // 2 if b == 1 else 0))
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
  result["fused_projections"] = ctx.student.cfg.fuse_projections  # q/k/v and gate/up one dot each
  # a one-row dot runs over this many slices of its weight (model/matvec.py)
  result["matvec_slices"] = ctx.student.cfg.matvec_split
  result.update(decode_roofline(ctx.student, p.prompt_len, p.max_new_tokens, bw.result()))
  result["student_kv_bytes_per_token_our_loop_reads"] = _kv_bytes_per_position(ctx.student.cfg) * ctx.max_len
  result["decode_roofline_fraction_b1"] = result["ours_b1_tokens_per_s"] / result["roofline_tokens_per_s_b1"]
  # The same over the bytes a step does read: an untied input embedding table gives one row a token.
  result["decode_roofline_fraction_b1_bytes_read"] = (
    result["ours_b1_tokens_per_s"] * result["decode_bytes_read_per_token_b1"] / (result["membw_GBps"] * 1e9)
  )
  # Same with the best single copy instead of the median (a shared machine's bandwidth swings).
  result["decode_roofline_fraction_b1_best_bw"] = (
    result["ours_b1_tokens_per_s"] * result["decode_bytes_per_token_b1"] / (result["membw_best_GBps"] * 1e9)
  )
  log(
    f"roofline b1: {result['membw_GBps']:.1f} GB/s / {result['decode_bytes_per_token_b1'] / 1e6:.1f} MB "
    f"per token = {result['roofline_tokens_per_s_b1']:.1f} tok/s; ours at {result['decode_roofline_fraction_b1']:.2f} "
    f"({result['decode_roofline_fraction_b1_bytes_read']:.2f} over the "
    f"{result['decode_bytes_read_per_token_b1'] / 1e6:.1f} MB read)"
  )
  result["_student_only_decoder"] = dec


def _kv_bytes_per_position(cfg) -> int:
  return 2 * cfg.num_layers * cfg.num_kv_heads * cfg.head_dim * np.dtype(cfg.dtype).itemsize


def decode_roofline(lm, prompt_len: int, new_tokens: int, bw: dict) -> dict:
  """The batch-1 decode roofline of `lm`: every step must read all params and the valid KV cache
  once; copy bandwidth (`bw`, CopyBandwidth's result) over those bytes, averaged over the steps, is
  tokens/s. That is the usual count (model bandwidth utilisation); `decode_bytes_read_per_token_b1`
  also leaves out an untied input embedding table, of which a token reads one row."""
  param_bytes = _param_bytes(lm.params)
  kv_per_pos = _kv_bytes_per_position(lm.cfg)
  mean_ctx = prompt_len + (new_tokens + 1) / 2  # positions attended, averaged over the steps
  bytes_per_token = param_bytes + kv_per_pos * mean_ctx
  embed = 0 if lm.cfg.tie_word_embeddings else _param_bytes(lm.params["params"]["embed_tokens"])
  row = embed // lm.cfg.vocab_size
  return {
    **bw,
    "student_param_bytes": param_bytes,
    "student_kv_bytes_per_token_mean": kv_per_pos * mean_ctx,
    "decode_bytes_per_token_b1": bytes_per_token,
    "decode_bytes_read_per_token_b1": bytes_per_token - embed + row,
    "roofline_tokens_per_s_b1": bw["membw_GBps"] * 1e9 / bytes_per_token,
  }

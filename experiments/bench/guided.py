"""Benchmark section `guided`: the teacher writes step 1, then the student continues.

Ours (`GuidedDecoder`, lazy and lockstep, plus `never` with and without a teacher) against what a
user without this codebase does with HF `generate`, one row at a time (`hf_orchestration`).
Gives guided_speedup_vs_hf_orchestration, guided_never_overhead and first_step_vs_lockstep.
Run through experiments/bench/run.py; metrics: experiments/bench/BENCHMARKS.md.
"""

from __future__ import annotations

import time

import numpy as np

from decode.api import DecodeRequest
from experiments.bench import models as bm
from experiments.bench.models import Context, interleaved, log, median, timed


class DelimiterStop:
  """StoppingCriteria: a row is done once its last token is a step delimiter (same id set as ours)."""

  def __init__(self, ids):
    import torch

    self.ids = torch.as_tensor(sorted(ids), dtype=torch.long)

  def __call__(self, input_ids, scores, **kwargs):
    import torch

    return torch.isin(input_ids[:, -1], self.ids)


def hf_orchestration(student, teacher, prompt: list[int], new_tokens: int, stop) -> tuple[list[int], int]:
  """What a user without this codebase does per row: the teacher writes step 1 (generate until a
  delimiter), then the student generates the rest from prompt + teacher step (ids concatenated;
  with this tokenizer that equals decoding and re-encoding the text). Returns (new ids, step length)."""
  import torch
  from transformers import StoppingCriteriaList

  x = torch.tensor([prompt], dtype=torch.long)
  with torch.no_grad():
    t_out = teacher.generate(
      input_ids=x,
      attention_mask=torch.ones_like(x),
      do_sample=False,
      max_new_tokens=new_tokens,
      stopping_criteria=StoppingCriteriaList([stop]),
      pad_token_id=bm.PAD_ID,
    )
    step = t_out.shape[1] - x.shape[1]
    rest = new_tokens - step
    if rest > 0:
      s_out = student.generate(
        input_ids=t_out,
        attention_mask=torch.ones_like(t_out),
        do_sample=False,
        max_new_tokens=rest,
        min_new_tokens=rest,
        pad_token_id=bm.PAD_ID,
      )
    else:
      s_out = t_out
  return s_out[0, x.shape[1] :].tolist(), step


def bench_guided(ctx: Context, result: dict) -> None:
  """Teacher writes step 1 then the student continues: ours (lazy and lockstep) vs HF per row."""
  from decode.host.guided import GuidedDecoder

  p = ctx.preset
  prompts = ctx.prompts[: p.batch]
  lazy = GuidedDecoder(ctx.student, ctx.teacher)
  lock = GuidedDecoder(ctx.student, ctx.teacher, lockstep=True)
  solo = result.pop("_student_only_decoder", None) or GuidedDecoder(ctx.student, None)
  gen = lambda dec, pol, n=p.max_new_tokens: (
    lambda: dec.generate(DecodeRequest(prompts, pol, max_new_tokens=n, max_len=ctx.max_len))
  )
  warm = {}
  for name, dec, pol in (
    ("lazy", lazy, "step:1"),
    ("lockstep", lock, "step:1"),
    ("student_only", solo, "never"),
  ):
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

  times, outs = interleaved(
    {
      "step1_lazy": with_stats("lazy", lazy, "step:1"),
      "never_with_teacher": with_stats("never", lazy, "never"),
      "never_student_only": gen(solo, "never"),
    },
    p.guided_repeats,
  )
  lock_times, lock_outs = interleaved(
    {"step1_lockstep": with_stats("lockstep", lock, "step:1")}, p.guided_repeats
  )
  times.update(lock_times)
  outs.update(lock_outs)
  recompiled = (lazy.compiles, lock.compiles, solo.compiles) != compiles0
  ours_rows = outs["step1_lazy"]
  for k, rows in outs.items():
    if {len(r.token_ids) for r in rows} != {p.max_new_tokens}:
      raise RuntimeError(f"guided {k}: rows stopped early: {[len(r.token_ids) for r in rows]}")
  t = {k: median(v) for k, v in times.items()}
  step_lens = [r.teacher_tokens for r in ours_rows]
  log(
    f"guided ours: step:1 lazy {t['step1_lazy']:.2f}s, lockstep {t['step1_lockstep']:.2f}s, never+teacher "
    f"{t['never_with_teacher']:.2f}s, never student-only {t['never_student_only']:.2f}s; teacher step lengths "
    f"{step_lens}"
  )

  # HF baseline, per row, on the first hf_orchestration_rows prompts; scaled per row to the batch.
  n_rows = min(p.hf_orchestration_rows, len(prompts))
  stop = DelimiterStop(np.flatnonzero(lazy.masks.delimiter).tolist())
  hf_orchestration(ctx.hf_student, ctx.hf_teacher, prompts[0], 2, stop)  # warm-up
  t0 = time.perf_counter()
  hf_rows = [
    hf_orchestration(ctx.hf_student, ctx.hf_teacher, q, p.max_new_tokens, stop) for q in prompts[:n_rows]
  ]
  hf_s = time.perf_counter() - t0
  if {len(r) for r, _ in hf_rows} != {p.max_new_tokens}:
    raise RuntimeError(f"HF orchestration rows stopped early: {[len(r) for r, _ in hf_rows]}")
  hf_per_row = hf_s / n_rows
  hf_scaled = hf_per_row * len(prompts)
  match = sum(r.token_ids == h for r, (h, _) in zip(ours_rows, hf_rows))
  log(
    f"guided HF orchestration: {hf_s:.1f}s for {n_rows} rows ({hf_per_row:.2f}s/row) -> {hf_scaled:.1f}s for "
    f"{len(prompts)}; ours {t['step1_lazy']:.2f}s; outputs match {match}/{n_rows}"
  )

  result.update(
    {
      "guided_speedup_vs_hf_orchestration": hf_scaled / t["step1_lazy"],
      "guided_never_overhead": t["never_with_teacher"] / t["never_student_only"],
      "first_step_vs_lockstep": t["step1_lazy"] / t["step1_lockstep"],
      "guided_step1_s": t["step1_lazy"],
      "guided_step1_lockstep_s": t["step1_lockstep"],
      "guided_never_with_teacher_s": t["never_with_teacher"],
      "guided_never_student_only_s": t["never_student_only"],
      "guided_times_s": times,
      "guided_compile_and_warmup_s": warm,
      "guided_step1_tokens_per_s": len(prompts) * p.max_new_tokens / t["step1_lazy"],
      "guided_teacher_step1_tokens_per_row": step_lens,
      "guided_teacher_calls": {k: v.teacher_calls for k, v in stats.items()},
      "guided_loop_iterations": {k: v.iterations for k, v in stats.items()},
      "guided_lockstep_outputs_equal_lazy": all(
        a.token_ids == b.token_ids for a, b in zip(ours_rows, outs["step1_lockstep"])
      ),
      "guided_recompiled_during_timing": recompiled,
      "hf_orchestration_s_timed": hf_s,
      "hf_orchestration_rows_timed": n_rows,
      "hf_orchestration_s_per_row": hf_per_row,
      "hf_orchestration_s_scaled": hf_scaled,
      "hf_orchestration_scaled_to_rows": len(prompts),
      "hf_orchestration_note": (
        f"HF timed on {n_rows} of {len(prompts)} rows, one pass after a warm-up; "
        f"per-row time x {len(prompts)}"
      ),
      "hf_teacher_step1_tokens_per_row": [s for _, s in hf_rows],
      "guided_outputs_match_hf_rows": f"{match}/{n_rows}",
    }
  )

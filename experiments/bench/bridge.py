"""Benchmark section `bridge`: the text bridge's fork sweep, and its in-process teacher's row caches.

The pair crosses tokenizers: the bench teacher's weights under a tokenizer holding the same words
under permuted ids, so `make_decoder` picks the text bridge (the teacher writes whole steps as text).
1. An 8-timing sweep (`step:1..step:sweep_timings`) through `SweepRunner` in fork mode against the
   same rows in plain mode, interleaved after an untimed pass of each (compiles): gives
   bridge_fork_vs_plain and whether the rows are equal (every field but `mode` and what the teacher
   read: a forked row's teacher starts from its cache of the problem's prompt + student run).
2. Teacher tokens read per row with the teacher keeping each row's cache between boundaries
   (`LocalTeacher`) against re-reading every prompt whole (`keep_caches=False`, the bridge before),
   on policies that go back to the teacher (`always`, `step:2,n=3`), interleaved.
Run through experiments/bench/run.py; metrics: experiments/bench/BENCHMARKS.md.
"""

from __future__ import annotations

import dataclasses
import os

from experiments.bench import models as bm
from experiments.bench.models import Context, interleaved, log, median

MULTI_BOUNDARY = ("always", "step:2,n=3")  # policies whose rows go back to the teacher


def permuted_teacher(ctx: Context, seed: int = 5):
  """The bench teacher's weights under a tokenizer holding the same words under other ids."""
  import random

  n = ctx.preset.pair.vocab_size
  words = list(range(len(bm.SPECIALS), n))
  shuffled = words[:]
  random.Random(seed).shuffle(shuffled)
  vocab = {bm.token_text(i, ctx.preset.pair.delimiter_every): i for i in range(len(bm.SPECIALS))}
  vocab.update({bm.token_text(w, ctx.preset.pair.delimiter_every): j for w, j in zip(words, shuffled)})
  return dataclasses.replace(ctx.teacher, tokenizer=bm.word_level_tokenizer(vocab), name="teacher_permuted")


def _rows(ctx: Context, policies):
  from decode.core.policy import parse_policy
  from experiments.sweep.grid import ModelEntry, expand_grid
  from experiments.tasks.datasets import Problem

  p = ctx.preset
  probs = [
    Problem(f"bench/{i}", ctx.tokenizer.decode(ids), "0", None, "bench")
    for i, ids in enumerate(ctx.prompts[: p.sweep_prompts])
  ]
  texts = {q.problem_id: q.question for q in probs}
  pols = [parse_policy(s) for s in policies]
  return expand_grid(
    "bench", probs, texts, [ModelEntry("student", str(ctx.student_dir))], "teacher", pols, [0]
  )


COSTS = ("teacher_read", "teacher_prefilled")  # what the teacher read: fewer tokens with a cache


def _same_rows(a: dict, b: dict, skip=("mode",) + COSTS) -> bool:
  drop = lambda r: {k: v for k, v in r.items() if k not in skip}
  return a.keys() == b.keys() and all(drop(a[k]) == drop(b[k]) for k in a)


def _mean(records, field: str) -> float:
  vals = [r[field] for r in records]
  return sum(vals) / max(1, len(vals))


def bench_bridge(ctx: Context, result: dict) -> None:
  from decode.api import DecodeRequest
  from decode.bridge.decoder import BridgeDecoder
  from decode.bridge.pairing import make_decoder
  from decode.bridge.teachers import LocalTeacher
  from experiments.sweep.runner import DecodeSettings, SweepRunner
  from experiments.sweep.store import ResultsStore

  p = ctx.preset
  teacher = permuted_teacher(ctx)
  decoder = make_decoder(ctx.student, teacher)
  if not isinstance(decoder, BridgeDecoder):
    raise RuntimeError("the permuted teacher should need the text bridge")
  settings = DecodeSettings(batch_size=p.sweep_batch, max_len=ctx.max_len, max_new_tokens=p.max_new_tokens)
  sweep_rows = _rows(ctx, [f"step:{k}" for k in range(1, p.sweep_timings + 1)])
  tmp = ctx.student_dir.parent / "bridge_stores"  # inside setup's temporary directory
  runs = iter(range(1 << 30))

  def sweep(fork: bool):
    runner = SweepRunner(
      decoder, ResultsStore(tmp / f"{next(runs)}.jsonl"), settings, fork=fork, progress=False
    )
    runner.run(sweep_rows)
    return runner

  load = os.getloadavg()
  # 1. fork vs plain: an untimed pass of each first (the teacher's calls come in several shapes)
  sweep(True), sweep(False)
  warm = decoder.compiles
  times, outs = interleaved({"fork": lambda: sweep(True), "plain": lambda: sweep(False)}, p.sweep_repeats)
  timed_compiles = decoder.compiles - warm
  fork_rows, plain_rows = outs["fork"].store.rows, outs["plain"].store.rows
  modes: dict[str, int] = {}
  for rec in fork_rows.values():
    modes[rec["mode"]] = modes.get(rec["mode"], 0) + 1
  t_fork, t_plain = median(times["fork"]), median(times["plain"])
  log(
    f"bridge: fork sweep {t_fork:.1f}s vs plain {t_plain:.1f}s -> {t_fork / t_plain:.2f} "
    f"({len(sweep_rows)} rows, modes {modes}); rows equal: {_same_rows(fork_rows, plain_rows)}"
  )

  # 2. the teacher's row caches: tokens read per row, keeping vs re-reading
  reread = BridgeDecoder(ctx.student, LocalTeacher(teacher, keep_caches=False))
  rows = _rows(ctx, MULTI_BOUNDARY)
  request = DecodeRequest(
    decoder.encode([r.prompt for r in rows]),
    [r.policy for r in rows],
    p.max_new_tokens,
    texts=[r.prompt for r in rows],
    max_len=ctx.max_len,
  )

  def records(dec):
    return {r.row_id: res.to_json() for r, res in zip(rows, dec.generate(request))}

  records(decoder), records(reread)  # untimed: compiles
  cache_times, cache_outs = interleaved(
    {"keep": lambda: records(decoder), "reread": lambda: records(reread)}, p.sweep_repeats
  )
  kept, reread_rows = cache_outs["keep"].values(), cache_outs["reread"].values()
  result.update(
    {
      "bridge_fork_vs_plain": t_fork / t_plain,
      "bridge_fork_s": t_fork,
      "bridge_plain_s": t_plain,
      "bridge_times_s": times,
      "bridge_rows": len(sweep_rows),
      "bridge_fork_equals_plain": _same_rows(fork_rows, plain_rows),
      "bridge_fork_row_modes": modes,
      "bridge_loop_calls": {"fork": outs["fork"].loop_calls, "plain": outs["plain"].loop_calls},
      "bridge_sweep_mean_teacher_read": {
        "fork": _mean(fork_rows.values(), "teacher_read"),
        "plain": _mean(plain_rows.values(), "teacher_read"),
      },
      "bridge_compiles_during_timing": timed_compiles,
      "bridge_teacher_read_per_row": {
        "policies": list(MULTI_BOUNDARY),
        "rows": len(rows),
        "keep_caches": _mean(kept, "teacher_read"),
        "reread": _mean(reread_rows, "teacher_read"),
        "mean_round_trips": _mean(kept, "round_trips"),
      },
      "bridge_teacher_read_ratio": _mean(kept, "teacher_read")
      / max(1e-9, _mean(reread_rows, "teacher_read")),
      "bridge_cache_rows_equal": _same_rows(cache_outs["keep"], cache_outs["reread"]),
      "bridge_cache_times_s": cache_times,
      "bridge_cache_keep_vs_reread": median(cache_times["keep"]) / median(cache_times["reread"]),
      "bridge_loadavg": {"start": load, "end": os.getloadavg()},
    }
  )
  log(
    f"bridge: teacher tokens read per row ({', '.join(MULTI_BOUNDARY)}): "
    f"{_mean(kept, 'teacher_read'):.0f} keeping row caches vs {_mean(reread_rows, 'teacher_read'):.0f} re-reading; "
    f"time {median(cache_times['keep']):.1f}s vs {median(cache_times['reread']):.1f}s"
  )

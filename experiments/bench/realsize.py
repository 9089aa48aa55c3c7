"""Benchmark section `realsize`: the two costs that real-size sweeps hit and toy models hide.

1. compile_depth_ratio: compile time of the guided loop (teacher present, sub-batches on) for a
   24-layer student and a 28-layer teacher over the same program at 4 layers each. Widths and
   vocabulary of a real 0.5B / 1.5B pair (Qwen2.5); compiled from abstract shapes (no weights), so
   it runs anywhere. Layers are scanned, so the ratio should stay near 1.
2. fewshot_sweep_speedup: an 8-timing fork sweep of 16 problems whose prompts share a 4-shot
   prefix (>= 80% of each prompt; exemplars of GSM8K size, Preset.fewshot_prompts), run without
   the shared prefix cache over with it, on the benchmark pair; fewshot_outputs_equal checks that
   both wrote the same rows.
3. realsize_decode_speedup_vs_hf_b1 / _b16: student-only greedy decode of a random model at
   Qwen2.5-0.5B widths (24 layers, 151,936 vocabulary, tied embeddings; ~494M params, float32),
   ours vs HF `generate` on the same weights, interleaved; its roofline (bytes a step reads over
   the copy bandwidth); and the tokens/s of a guided `step:1` batch with that model as both student
   and teacher (a same-size teacher: the loop's own cost at real width, not a quality measurement).
Run through experiments/bench/run.py; metrics: experiments/bench/BENCHMARKS.md.
"""

from __future__ import annotations

import dataclasses
import os
import time

import jax
import numpy as np

from decode.api import DecodeRequest
from experiments.bench.models import Context, cpu_count, log, random_prompts, timed

# Widths of a real same-tokenizer pair (Qwen2.5-0.5B student, Qwen2.5-1.5B teacher).
STUDENT = dict(hidden_size=896, num_heads=14, num_kv_heads=2, head_dim=64, intermediate_size=4864)
TEACHER = dict(hidden_size=1536, num_heads=12, num_kv_heads=2, head_dim=128, intermediate_size=8960)
VOCAB = 151_936


# Smoke-test widths (preset tiny): the same program at toy sizes.
TINY_STUDENT = dict(hidden_size=32, num_heads=4, num_kv_heads=2, head_dim=8, intermediate_size=64)
TINY_TEACHER = dict(hidden_size=48, num_heads=4, num_kv_heads=2, head_dim=12, intermediate_size=96)
TINY_VOCAB = 512


def _config(widths: dict, num_layers: int, unroll: bool, vocab: int):
  from model.config import DecoderConfig

  return DecoderConfig(
    family="qwen2",
    vocab_size=vocab,
    num_layers=num_layers,
    max_position_embeddings=32768,
    qkv_bias=True,
    tie_word_embeddings=True,
    scan_layers=not unroll,
    **widths,
  )


def compile_seconds(
  student_layers: int, teacher_layers: int, batch: int, max_len: int, unroll=False, tiny=False
) -> float:
  """Seconds to lower + compile the guided loop (teacher and sub-batches on) from abstract shapes."""
  from decode.core.loop import jitted_loop
  from decode.core.policy import parse_policy
  from decode.core.state import LoopCaches, LoopConfig, LoopModel
  from decode.core.vocab import VocabMasks
  from decode.host.batching import build_inputs
  from decode.host.placement import teacher_row_buckets
  from model.kv_cache import KVCache, cache_shape
  from model.lm import param_shapes

  vocab = TINY_VOCAB if tiny else VOCAB
  pair = (TINY_STUDENT, TINY_TEACHER) if tiny else (STUDENT, TEACHER)
  models, caches = [], []
  for widths, layers in zip(pair, (student_layers, teacher_layers)):
    cfg = _config(widths, layers, unroll, vocab)
    models.append(LoopModel(params=param_shapes(cfg), cfg=cfg))
    arr = jax.ShapeDtypeStruct(cache_shape(cfg, batch, max_len), cfg.jnp_dtype)
    caches.append(KVCache(keys=arr, values=arr))
  ids = np.arange(vocab)
  masks = VocabMasks(delimiter=ids % 20 == 0, content=np.ones(vocab, bool), eos=ids == 2)
  prompts = [[5 + i] * 8 for i in range(batch)]
  request = DecodeRequest(prompts, "step:1", 16)
  inp, T, B = build_inputs(
    request, [parse_policy("step:1")] * batch, masks, bucket=max_len, max_context=32768
  )
  lc = LoopConfig(
    max_len=T,
    vocab_size=vocab,
    prefill_chunk=64,
    teacher_chunk=32,
    teacher_row_buckets=teacher_row_buckets(B, 3),
  )
  seconds, _ = timed(lambda: jitted_loop.lower(lc, *models, inp, LoopCaches(*caches)).compile())
  return seconds


def bench_compile_depth(result: dict, full: bool, tiny: bool = False) -> None:
  batch, max_len = 16, 256
  deep_layers = (3, 4) if tiny else (24, 28)  # tiny: the smoke test's code path, not the measurement
  shallow = compile_seconds(2 if tiny else 4, 2 if tiny else 4, batch, max_len, tiny=tiny)
  deep = compile_seconds(*deep_layers, batch, max_len, tiny=tiny)
  log(f"realsize: guided loop compile {shallow:.1f}s at 4+4 layers, {deep:.1f}s at 24+28 layers (scanned)")
  result.update(
    {
      "compile_depth_ratio": deep / shallow,
      "compile_s_4_4_layers": shallow,
      "compile_s_24_28_layers": deep,
      "compile_note": "guided loop, teacher + 3 sub-batch sizes, B=16, T=256, Qwen2.5-0.5B/1.5B widths",
    }
  )
  if full:  # the unrolled program (what the codebase compiled before layers were scanned)
    un_shallow = compile_seconds(4, 4, batch, max_len, unroll=True)
    un_deep = compile_seconds(24, 28, batch, max_len, unroll=True)
    log(f"realsize: unrolled compile {un_shallow:.1f}s at 4+4 layers, {un_deep:.1f}s at 24+28 layers")
    result.update(
      {
        "compile_depth_ratio_unrolled": un_deep / un_shallow,
        "compile_s_24_28_layers_unrolled": un_deep,
      }
    )


def bench_scan_decode(ctx: Context, result: dict) -> None:
  """Decode time of the student's layer programs over the same weights, interleaved: scanned over
  per-layer params with fused projections (the CPU default), scanned over stacked params (XLA:CPU
  copies every layer's weights per token), unrolled, the default with q/k/v and gate/up apart, and
  the default with plain one-row dots (no matvec slices); each as a ratio to the default's time."""
  from decode.host.guided import GuidedDecoder
  from model.lm import to_layout

  s = ctx.student
  decoders = {}
  for name, kw in (
    ("default", {}),
    ("stacked", dict(scan_layers=True, layer_params="stacked")),
    ("unrolled", dict(scan_layers=False)),
    ("separate", dict(fused_projections="separate")),  # the default's layout, q/k/v and gate/up apart
    ("unsliced", dict(matvec_slices=1)),  # the default with plain one-row dots (model/matvec.py)
  ):
    cfg = s.cfg.replace(**kw)
    decoders[name] = GuidedDecoder(dataclasses.replace(s, cfg=cfg, params=to_layout(s.params, cfg)), None)
  result["realsize_default_layer_params"] = "stacked" if s.cfg.stacked_params else "per_layer"
  new_tokens = min(64, ctx.preset.max_new_tokens)
  for batch in (1, ctx.preset.batch):
    prompts = ctx.prompts[:batch]
    for d in decoders.values():  # compile on the timed shapes
      d.generate(DecodeRequest(prompts, "never", max_new_tokens=2, max_len=ctx.max_len))
    times = {k: [] for k in decoders}
    for _ in range(max(2, ctx.preset.decode_repeats)):
      for k, d in decoders.items():
        dt, _ = timed(
          lambda d=d: d.generate(
            DecodeRequest(prompts, "never", max_new_tokens=new_tokens, max_len=ctx.max_len)
          )
        )
        times[k].append(dt)
    t = {k: float(np.median(v)) for k, v in times.items()}
    result[f"decode_stacked_over_default_time_b{batch}"] = t["stacked"] / t["default"]
    result[f"decode_unrolled_over_default_time_b{batch}"] = t["unrolled"] / t["default"]
    result[f"decode_separate_over_default_time_b{batch}"] = t["separate"] / t["default"]
    result[f"decode_unsliced_over_default_time_b{batch}"] = t["unsliced"] / t["default"]
    log(
      f"realsize: batch {batch} decode time over the default program ({result['realsize_default_layer_params']}): stacked "
      f"{t['stacked'] / t['default']:.2f}x, unrolled {t['unrolled'] / t['default']:.2f}x, "
      f"projections separate {t['separate'] / t['default']:.2f}x, plain one-row dots {t['unsliced'] / t['default']:.2f}x"
    )


def _fewshot_rows(ctx: Context, n_problems: int, shots: int, shot_len: int, question_len: int, timings: int):
  from decode.core.policy import parse_policy
  from experiments.sweep.grid import ModelEntry, expand_grid
  from experiments.tasks.datasets import Problem

  vocab = ctx.preset.pair.vocab_size
  exemplars = sum(random_prompts(shots, shot_len, vocab, seed=7), [])  # the shared k-shot block
  probs, texts = [], {}
  for i, q in enumerate(random_prompts(n_problems, question_len, vocab, seed=8)):
    ids = exemplars + q
    if ctx.roundtrip(ids) != ids:
      raise RuntimeError("benchmark tokenizer does not round-trip the few-shot prompts")
    pid = f"fewshot/{i}"
    probs.append(Problem(pid, ctx.tokenizer.decode(ids), "0", None, "bench"))
    texts[pid] = probs[-1].question
  policies = [parse_policy("never")] + [parse_policy(f"step:{k}") for k in range(1, timings + 1)]
  rows = expand_grid(
    "bench", probs, texts, [ModelEntry("student", str(ctx.student_dir))], "teacher", policies, [0]
  )
  return rows, len(exemplars), len(exemplars) + question_len


def bench_fewshot_sweep(ctx: Context, result: dict) -> None:
  """8-timing fork sweeps of 16 four-shot problems, one per preset prompt shape: without the shared
  prefix cache over with it. The first shape's metrics are unsuffixed, the others end `_shots<len>`."""
  equal = True
  for i, (shot_len, question_len) in enumerate(ctx.preset.fewshot_prompts):
    suffix = "" if i == 0 else f"_shots{shot_len}"
    metrics = _fewshot_sweep(ctx, shot_len, question_len)
    equal &= metrics.pop("fewshot_outputs_equal")
    result.update({k + suffix: v for k, v in metrics.items()})
  result["fewshot_outputs_equal"] = equal  # every shape's two sweeps wrote the same rows


def _fewshot_sweep(ctx: Context, shot_len: int, question_len: int) -> dict:
  from decode.host.guided import GuidedDecoder
  from experiments.sweep.runner import DecodeSettings, SweepRunner
  from experiments.sweep.store import ResultsStore

  p = ctx.preset
  max_new_tokens, repeats = p.fewshot_new_tokens, p.fewshot_repeats
  rows, shared_len, prompt_len = _fewshot_rows(
    ctx, 16, shots=4, shot_len=shot_len, question_len=question_len, timings=8
  )
  dec = GuidedDecoder(ctx.student, ctx.teacher)
  prompt_ids = dec.encode(sorted({r.prompt for r in rows}))
  max_len = dec.buffer_length(max(map(len, prompt_ids)), max_new_tokens)
  settings = DecodeSettings(batch_size=16, max_len=max_len, max_new_tokens=max_new_tokens)
  tmp = ctx.student_dir.parent / f"fewshot_stores_{shot_len}"

  def sweep(name: str, shared: bool, s=settings):
    prefix = dec.shared_prefix(prompt_ids, max_len=max_len) if shared else None
    runner = SweepRunner(
      dec, ResultsStore(tmp / f"{name}.jsonl"), s, fork=True, progress=False, shared_prefix=prefix
    )
    runner.run(rows)
    return runner

  short = dataclasses.replace(settings, max_new_tokens=8)  # warm-up: compiles both paths, same shapes
  sweep("warm_on", True, short)
  sweep("warm_off", False, short)
  times = {"off": [], "on": []}
  runners = {}
  for r in range(repeats):
    for mode in ("off", "on"):
      dt, runners[mode] = timed(lambda: sweep(f"{mode}{r}", mode == "on"))
      times[mode].append(dt)
      log(
        f"realsize: few-shot fork sweep ({prompt_len}-token prompts), shared prefix {mode}: {dt:.1f}s "
        f"({runners[mode].loop_calls} loop calls)"
      )
  a, b = runners["off"].store.rows, runners["on"].store.rows
  equal = a.keys() == b.keys() and all(
    (a[k]["token_ids"], a[k]["authors"]) == (b[k]["token_ids"], b[k]["authors"]) for k in a
  )
  t_off, t_on = float(np.median(times["off"])), float(np.median(times["on"]))
  log(
    f"realsize: few-shot sweep off {t_off:.1f}s / on {t_on:.1f}s = {t_off / t_on:.2f}x; equal rows: {equal}"
  )
  return {
    "fewshot_sweep_speedup": t_off / t_on,
    "fewshot_outputs_equal": equal,
    "fewshot_sweep_s": {"off": t_off, "on": t_on},
    "fewshot_shared_prefix_fraction": shared_len / prompt_len,
    "fewshot_prompt_len": prompt_len,
    "fewshot_buffer_len": max_len,
    "fewshot_rows": len(rows),
    "fewshot_max_new_tokens": max_new_tokens,
  }


def _qwen_hf_config(widths: dict, layers: int, vocab: int, init_std: float):
  import transformers

  from experiments.bench import models as bm

  return transformers.Qwen2Config(
    vocab_size=vocab,
    hidden_size=widths["hidden_size"],
    intermediate_size=widths["intermediate_size"],
    num_hidden_layers=layers,
    num_attention_heads=widths["num_heads"],
    num_key_value_heads=widths["num_kv_heads"],
    max_position_embeddings=2048,
    rms_norm_eps=1e-6,
    initializer_range=init_std,
    tie_word_embeddings=True,
    bos_token_id=bm.BOS_ID,
    eos_token_id=bm.EOS_ID,
    pad_token_id=bm.PAD_ID,
  )


def make_realsize_student(out_dir, tiny: bool):
  """A random Qwen2 at Qwen2.5-0.5B widths (tiny: the smoke test's), saved with the bench tokenizer."""
  import torch
  import transformers

  from experiments.bench import models as bm

  widths, layers, vocab = (TINY_STUDENT, 2, TINY_VOCAB) if tiny else (STUDENT, 24, VOCAB)
  torch.manual_seed(0)
  hf_cfg = _qwen_hf_config(widths, layers, vocab, init_std=0.3 if tiny else 0.05)
  model = transformers.Qwen2ForCausalLM(hf_cfg).eval()
  with torch.no_grad():  # specials (EOS included) never win greedy argmax (tied: the embedding rows)
    model.model.embed_tokens.weight[: len(bm.SPECIALS)] = 0.0
  model.generation_config.pad_token_id = bm.PAD_ID
  model.generation_config.eos_token_id = bm.EOS_ID
  model.save_pretrained(str(out_dir), safe_serialization=True)
  bm.make_tokenizer([out_dir], vocab, delimiter_every=20 if not tiny else 5)
  return model


def bench_realsize_decode(result: dict, root, preset) -> None:
  """Ours vs HF greedy decode at Qwen2.5-0.5B widths (batch 1 and 16), its roofline, and a guided
  step:1 batch's tokens/s with a same-size teacher."""
  import gc
  from pathlib import Path

  import torch
  import transformers

  from decode.host.guided import GuidedDecoder
  from experiments.bench.decode import decode_roofline, hf_greedy, memory_bandwidth
  from experiments.bench.models import interleaved, median
  from model.hf_import import load_model

  p, tiny = preset, preset.name == "tiny"
  d = Path(root) / "realsize_student"
  t0 = time.perf_counter()
  make_realsize_student(d, tiny)
  gc.collect()
  ours = load_model(d)
  hf = transformers.AutoModelForCausalLM.from_pretrained(str(d), dtype=torch.float32).eval()
  log(
    f"realsize decode: random Qwen2.5-0.5B-width student built and loaded in {time.perf_counter() - t0:.1f}s"
  )
  vocab, n_new = ours.cfg.vocab_size, p.realsize_new_tokens
  prompts = random_prompts(p.batch, p.prompt_len, vocab, seed=11)
  dec = GuidedDecoder(ours, None)
  max_len = dec.buffer_length(p.prompt_len, n_new)
  result["realsize_layer_params"] = "stacked" if ours.cfg.stacked_params else "per_layer"
  result["realsize_fused_projections"] = ours.cfg.fuse_projections
  result["realsize_matvec_slices"] = ours.cfg.matvec_split  # one-row dots over slices (model/matvec.py)
  for b in (1, p.batch):
    rows = prompts[:b]
    req = lambda n, rows=rows: DecodeRequest(rows, "never", max_new_tokens=n, max_len=max_len)
    dec.generate(req(2))
    hf_greedy(hf, rows, 2)
    times, outs = interleaved(
      {"ours": lambda: dec.generate(req(n_new)), "hf": lambda rows=rows: hf_greedy(hf, rows, n_new)},
      p.realsize_repeats,
    )
    if {len(r.token_ids) for r in outs["ours"]} != {n_new} or {len(r) for r in outs["hf"]} != {n_new}:
      raise RuntimeError("realsize decode: rows stopped early (EOS was emitted)")
    t_ours, t_hf = median(times["ours"]), median(times["hf"])
    match = sum(r.token_ids == h for r, h in zip(outs["ours"], outs["hf"]))
    result.update(
      {
        f"realsize_ours_b{b}_tokens_per_s": b * n_new / t_ours,
        f"realsize_hf_b{b}_tokens_per_s": b * n_new / t_hf,
        f"realsize_decode_speedup_vs_hf_b{b}": t_hf / t_ours,
        f"realsize_greedy_match_rows_b{b}": f"{match}/{b}",
        f"realsize_loadavg_b{b}": os.getloadavg()[0],
      }
    )
    log(
      f"realsize decode b{b}: ours {b * n_new / t_ours:.1f} tok/s, HF {b * n_new / t_hf:.1f} tok/s, "
      f"speedup {t_hf / t_ours:.2f}, greedy match {match}/{b} (load {os.getloadavg()[0]:.1f})"
    )
  roof = decode_roofline(
    ours, p.prompt_len, n_new, memory_bandwidth(p.membw_mb, p.membw_repeats, cpu_count())
  )
  result.update({f"realsize_{k}": v for k, v in roof.items()})
  result["realsize_decode_roofline_fraction_b1"] = (
    result["realsize_ours_b1_tokens_per_s"] / roof["roofline_tokens_per_s_b1"]
  )
  log(f"realsize decode: roofline fraction b1 {result['realsize_decode_roofline_fraction_b1']:.2f}")
  hf = None  # free its 2 GB before the guided run
  gc.collect()

  guided = GuidedDecoder(ours, ours)  # same-size teacher: the loop's cost at real width
  rows = prompts[: p.batch]
  greq = lambda n: DecodeRequest(rows, "step:1", max_new_tokens=n, max_len=max_len)
  guided.generate(greq(2))
  g_time, _ = timed(lambda: guided.generate(greq(n_new)))  # one timed run: a rate, not a ratio
  result["realsize_guided_step1_tokens_per_s"] = len(rows) * n_new / g_time
  result["realsize_note"] = (
    f"random Qwen2 at Qwen2.5-0.5B widths ({ours.cfg.num_layers} layers, vocab {vocab}), float32; prompts "
    f"{p.prompt_len} tokens, {n_new} new, buffer {max_len}; {p.realsize_repeats} interleaved runs, medians; "
    f"guided step:1 at batch {len(rows)} with the same model as teacher, one timed run after a warm-up"
  )
  log(f"realsize guided step:1 b{len(rows)}: {result['realsize_guided_step1_tokens_per_s']:.1f} tok/s")

"""What XLA makes of one decode step, per layer-params program: the weight copies in the optimised HLO.

  python -m experiments.bench.hlo_probe [--batch 1] [--layers 8] [--dump DIR]

Compiles one one-token forward (`model.lm.forward`, C = 1) of the benchmark student (random weights,
bench widths) for each program over the same weights: scanned over stacked params, scanned over
per-layer params (a switch per dot), unrolled. For each it counts, in `compiled.as_text()`, the
fusions and copies whose output has a block weight's shape (a weight materialised before its dot),
per layer and step, and shows one such line; with --time it also times the step (interleaved).
The last stdout line is one JSON object. BENCHMARKS.md ("The per-token weight copy") quotes it.
"""

from __future__ import annotations

import argparse
import json
import math
import re
import time
from pathlib import Path

# An instruction line of optimised HLO: '%name = f32[512,1408]{1,0} fusion(...), kind=kLoop, ...'
_INSTR = re.compile(r"^\s*(?:ROOT )?%(\S+) = (\w+)\[([\d,]*)\]\{[^}]*\} (\w[\w-]*)\(")


def student_config(layers: int):
  from experiments.bench.models import FULL
  from model.config import DecoderConfig

  s = FULL.student
  return DecoderConfig(
    family="llama",
    vocab_size=FULL.vocab_size,
    hidden_size=s.hidden_size,
    intermediate_size=s.intermediate_size,
    num_layers=layers,
    num_heads=s.num_heads,
    num_kv_heads=s.num_heads,
    head_dim=s.hidden_size // s.num_heads,
    max_position_embeddings=FULL.max_positions,
  )


def programs(cfg, params) -> dict:
  """name -> (config, params in its layout): the ways to run the same block weights (per-layer
  params fuse q/k/v and gate/up by default: `_separate` is the same program with 7 dots per layer;
  one-row dots run over matvec slices by default on one CPU device: `_unsliced` runs plain dots)."""
  from model.lm import to_layout

  out = {}
  for name, c in (
    ("scan_stacked", cfg.replace(scan_layers=True, layer_params="stacked")),
    ("scan_per_layer", cfg.replace(scan_layers=True, layer_params="per_layer")),
    (
      "scan_per_layer_separate",
      cfg.replace(scan_layers=True, layer_params="per_layer", fused_projections="separate"),
    ),
    ("scan_per_layer_unsliced", cfg.replace(scan_layers=True, layer_params="per_layer", matvec_slices=1)),
    ("unrolled", cfg.replace(scan_layers=False)),
  ):
    out[name] = (c, to_layout(params, c))
  return out


def block_weight_shapes(stacked_params) -> set[tuple[int, ...]]:
  """One layer's shape of every block weight (kernels) in stacked params, each as the 2-D [in, out]
  matrix a dot sees (a fused kernel [E, K, R + 2, D] may be copied as [E, K * (R + 2) * D]), and
  each as the [s, in / s, out] slices a one-row dot reads (model/matvec.py)."""
  from flax.traverse_util import flatten_dict

  block = flatten_dict(stacked_params["params"]["layers"])
  shapes = {tuple(x.shape[1:]) for path, x in block.items() if path[-1] == "kernel"}
  flat = {(s[0], math.prod(s[1:])) for s in shapes}
  sliced = {(k, s[0] // k, *s[1:]) for s in shapes | flat for k in (2, 4, 8) if s[0] % k == 0}
  return shapes | flat | sliced


def weight_copies(hlo: str, weight_shapes: set[tuple[int, ...]]) -> list[str]:
  """Lines of `hlo` that produce a block weight's shape by a fusion or copy: a weight materialised."""
  hits, fused = [], False
  for line in hlo.splitlines():
    if line.rstrip().endswith("{") and not line.startswith(" "):  # a computation opens
      fused = "fused" in line.split("(")[0] or "_computation" in line.split("(")[0]
      continue
    m = _INSTR.match(line)
    if fused:  # inside a fusion's own computation: its root is the fusion line counted outside
      continue
    if not m or m.group(4) not in ("fusion", "copy", "dynamic-slice", "slice"):
      continue
    shape = tuple(int(d) for d in m.group(3).split(",") if d)
    while shape and shape[0] == 1 and len(shape) > 2:  # [1, in, out] is still the weight
      shape = shape[1:]
    if shape in weight_shapes:
      hits.append(line.strip())
  return hits


def probe(batch: int, layers: int, max_len: int, dump: Path | None, time_steps: int) -> dict:
  import jax
  import jax.numpy as jnp
  import numpy as np

  from model.kv_cache import init_cache
  from model.lm import forward, init_params, to_layout

  cfg = student_config(layers)
  params = init_params(cfg.replace(layer_params="stacked"), jax.random.key(0))
  fused = to_layout(params, cfg.replace(layer_params="stacked", fused_projections="fused"))
  weight_shapes = block_weight_shapes(params) | block_weight_shapes(fused)
  result: dict = {"batch": batch, "layers": layers, "buffer_len": max_len, "backend": jax.default_backend()}
  steps = {}
  result["programs"] = list(programs(cfg, params))
  for name, (c, p) in programs(cfg, params).items():

    def step(p, tok, start, cache, c=c):
      logits, cache = forward(c, p, tok, start, jnp.ones_like(start), cache)
      return jnp.argmax(logits[:, -1], -1).astype(jnp.int32)[:, None], start + 1, cache

    args = (jnp.zeros((batch, 1), jnp.int32), jnp.full((batch,), max_len // 2, jnp.int32))
    jitted = jax.jit(step, donate_argnums=3)
    t0 = time.perf_counter()
    compiled = jitted.lower(p, *args, init_cache(c, batch, max_len)).compile()
    compile_s = time.perf_counter() - t0
    hlo = compiled.as_text()
    if dump:
      dump.mkdir(parents=True, exist_ok=True)
      (dump / f"decode_step_{name}_b{batch}.hlo").write_text(hlo)
    copies = weight_copies(hlo, weight_shapes)
    # A scanned body holds each copy once (it runs per layer); the unrolled program once per layer.
    per_layer = len(copies) / (layers if name == "unrolled" else 1)
    result[name] = {
      "compile_s": compile_s,
      "weight_copies_in_program": len(copies),
      "weight_copies_per_layer_per_step": per_layer,
      "example": copies[0][:220] if copies else None,
    }
    steps[name] = (jitted, p, args, init_cache(c, batch, max_len))
  if time_steps:
    times = {k: [] for k in steps}
    state = {k: [a for a in v[2]] + [v[3]] for k, v in steps.items()}
    for k, (jitted, p, _, _) in steps.items():  # warm
      state[k] = list(jitted(p, *state[k]))
    for _ in range(5):
      for k, (jitted, p, _, _) in steps.items():
        t0 = time.perf_counter()
        for _ in range(time_steps):
          state[k] = list(jitted(p, *state[k]))
          state[k][1] = jnp.minimum(state[k][1], max_len - 1)
        state[k][0].block_until_ready()
        times[k].append((time.perf_counter() - t0) / time_steps)
    for k, v in times.items():
      result[k]["step_ms"] = float(np.median(v)) * 1e3
  return result


def main(argv=None) -> None:
  ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  ap.add_argument("--batch", type=int, default=1)
  ap.add_argument("--layers", type=int, default=8)
  ap.add_argument("--max-len", type=int, default=192)
  ap.add_argument("--time", type=int, default=0, help="also time this many steps per program (5 rounds)")
  ap.add_argument("--dump", type=Path, default=None, help="write each program's optimised HLO here")
  args = ap.parse_args(argv)
  result = probe(args.batch, args.layers, args.max_len, args.dump, args.time)
  for name in result["programs"]:
    r = result[name]
    print(
      f"{name}: {r['weight_copies_per_layer_per_step']:.0f} weight copies per layer per step, "
      f"compile {r['compile_s']:.1f}s" + (f", step {r['step_ms']:.2f} ms" if "step_ms" in r else "")
    )
    if r["example"]:
      print(f"  e.g. {r['example']}")
  print(json.dumps(result, sort_keys=True))


if __name__ == "__main__":
  main()

"""The guided loop compiled ahead of time from shapes alone, on fake CPU devices: its memory analysis.

The program is the one GuidedDecoder runs (decode.core.loop.jitted_loop, a LoopConfig as
GuidedDecoder._call builds it, teacher present, rows over 'data', caches donated), lowered from
jax.ShapeDtypeStructs that carry each array's sharding, so nothing is allocated. XLA:CPU widens
bfloat16 dots and scatters to float32 (a float32 copy of every stacked weight and of each cache:
~20 GiB per device in the 7B + 70B plan), which an accelerator never makes, so a bfloat16 plan
compiles the float16 program: the same bytes, computed natively by XLA:CPU.
"""

from __future__ import annotations

import dataclasses
import time

import jax
import numpy as np
from jax.sharding import NamedSharding, PartitionSpec

from decode.api import DecodeRequest
from decode.core.loop import jitted_loop
from decode.core.policy import parse_policy
from decode.core.state import LoopCaches, LoopConfig, LoopModel
from decode.core.vocab import VocabMasks
from decode.host.batching import build_inputs
from decode.host.options import DecodeOptions
from decode.host.placement import cache_sharding, row_sharding, teacher_row_buckets
from experiments.plan.cli import PlanError
from model.config import DecoderConfig
from model.kv_cache import KVCache, cache_shape
from model.lm import LanguageModel, logical_param_axes, param_shapes
from model.sharding import Rules, make_mesh, param_shardings


@dataclasses.dataclass(frozen=True)
class CompiledMemory:
  """compiled.memory_analysis() of one device's program, and the seconds lowering + compiling took."""

  seconds: float
  argument_bytes: int  # params, caches, inputs
  output_bytes: int  # the final state (caches included)
  alias_bytes: int  # outputs that reuse donated arguments (the caches)
  temp_bytes: int  # the program's temporaries

  @property
  def total_bytes(self) -> int:
    return self.argument_bytes + self.output_bytes - self.alias_bytes + self.temp_bytes


def compile_dtype(cfg: DecoderConfig) -> DecoderConfig:
  """float16 for bfloat16 (same bytes, no XLA:CPU float32 copies); other dtypes as they are."""
  return cfg.replace(dtype="float16") if cfg.dtype == "bfloat16" else cfg


def plan_mesh(axis_sizes: dict[str, int]):
  """A mesh of the plan's shape over this process's first CPU devices."""
  n = int(np.prod(list(axis_sizes.values())))
  devices = jax.devices("cpu")
  if len(devices) < n:
    raise PlanError(
      f"the plan compiles on {n} fake CPU devices but this process has {len(devices)}; run it as "
      f"`python -m experiments.plan` (which sets XLA_FLAGS=--xla_force_host_platform_device_count={n}) "
      "or pass --no-compile"
    )
  return make_mesh(axis_sizes, devices=devices[:n])


def _abstract(tree, sharding_of):
  return jax.tree.map(
    lambda x: jax.ShapeDtypeStruct(np.shape(x), np.asarray(x).dtype, sharding=sharding_of(x)), tree
  )


def _loop_model(cfg: DecoderConfig, rules: Rules, mesh, batch: int, max_len: int):
  """(LoopModel with abstract sharded params, abstract zero cache), as GuidedDecoder._loop_models."""
  shapes = param_shapes(cfg)
  shardings = param_shardings(logical_param_axes(cfg), shapes, mesh, rules)
  params = jax.tree.map(lambda s, h: jax.ShapeDtypeStruct(s.shape, s.dtype, sharding=h), shapes, shardings)
  placed = cache_sharding(LanguageModel(cfg=cfg, params=None), batch, max_len, mesh, rules)
  arr = jax.ShapeDtypeStruct(cache_shape(cfg, batch, max_len), cfg.jnp_dtype, sharding=placed)
  return LoopModel(params=params, cfg=cfg, cache_sharding=placed), KVCache(keys=arr, values=arr)


def compile_loop(
  student: DecoderConfig,
  teacher: DecoderConfig,
  rules: tuple[Rules, Rules],
  axis_sizes: dict[str, int],
  batch: int,
  max_len: int,
  options: DecodeOptions | None = None,
) -> CompiledMemory:
  """Lowers and compiles the guided loop for this pairing and shape; nothing runs."""
  opts = options or DecodeOptions()
  mesh = plan_mesh(axis_sizes)
  s_model, s_cache = _loop_model(compile_dtype(student), rules[0], mesh, batch, max_len)
  t_model, t_cache = _loop_model(compile_dtype(teacher), rules[1], mesh, batch, max_len)
  vocab = min(student.vocab_size, teacher.vocab_size)  # no tokenizer read: the one both embed
  ids = np.arange(vocab)
  masks = VocabMasks(delimiter=ids == 1, content=np.ones(vocab, bool), eos=ids == 2)
  request = DecodeRequest([[1]] * batch, "never", max_len - 1, max_len=max_len, batch_size=batch)
  inp, _, _ = build_inputs(
    request, [parse_policy("never")] * batch, masks, bucket=opts.length_bucket, max_context=max_len
  )
  rows, replicated = row_sharding(mesh), NamedSharding(mesh, PartitionSpec())
  inp = _abstract(inp, lambda x: rows if np.ndim(x) and np.shape(x)[0] == batch else replicated)  # place_rows
  lc = LoopConfig(
    max_len=max_len,
    vocab_size=vocab,
    prefill_chunk=opts.prefill_chunk,
    teacher_chunk=opts.teacher_chunk,
    has_teacher=True,
    lockstep=opts.lockstep,
    teacher_row_buckets=teacher_row_buckets(batch, opts.teacher_sub_batches, mesh),
  )
  start = time.perf_counter()
  compiled = jitted_loop.lower(lc, s_model, t_model, inp, LoopCaches(s_cache, t_cache)).compile()
  seconds = time.perf_counter() - start
  stats = compiled.memory_analysis()
  if stats is None:
    raise PlanError("this jax backend gives no memory analysis; pass --no-compile")
  return CompiledMemory(
    seconds=seconds,
    argument_bytes=int(stats.argument_size_in_bytes),
    output_bytes=int(stats.output_size_in_bytes),
    alias_bytes=int(stats.alias_size_in_bytes),
    temp_bytes=int(stats.temp_size_in_bytes),
  )

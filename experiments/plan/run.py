"""A plan: both models' bytes per device by arithmetic, the compiled program's on top, and advice.

`make_plan` is the whole computation (no printing); `run` prints it (experiments.plan.report).
"""

from __future__ import annotations

import dataclasses
from typing import TextIO

from experiments.plan.cli import PlanArgs, PlanError, rules_named
from experiments.plan.compiled import CompiledMemory, compile_loop
from experiments.plan.memory import GIB, ModelMemory, model_memory
from model.config import DecoderConfig
from model.hf_import import load_config


@dataclasses.dataclass(frozen=True)
class Plan:
  args: PlanArgs
  batch: int  # rows: --batch-size rounded up to a multiple of 'data'
  configs: tuple[DecoderConfig, DecoderConfig]  # student, teacher
  student: ModelMemory
  teacher: ModelMemory
  compiled: CompiledMemory | None  # None with --no-compile

  @property
  def weight_bytes(self) -> int:
    return self.student.weight_bytes + self.teacher.weight_bytes

  @property
  def cache_bytes(self) -> int:
    return self.student.cache_bytes + self.teacher.cache_bytes

  @property
  def state_bytes(self) -> int | None:
    """The loop's inputs and state beyond weights and caches (token buffers, counters), compiled."""
    if self.compiled is None:
      return None
    c = self.compiled
    return c.argument_bytes + c.output_bytes - c.alias_bytes - self.weight_bytes - self.cache_bytes

  @property
  def extra_bytes(self) -> int:
    """What the compiled program needs beyond weights and caches (0 uncompiled)."""
    return 0 if self.compiled is None else self.compiled.total_bytes - self.weight_bytes - self.cache_bytes

  @property
  def total_bytes(self) -> int:
    return self.weight_bytes + self.cache_bytes + self.extra_bytes

  @property
  def fits(self) -> bool:
    return self.total_bytes <= self.args.hbm_gib * GIB


def load_configs(args: PlanArgs) -> tuple[DecoderConfig, DecoderConfig]:
  """Both configs from config.json alone, checked against the buffer length.

  Block params stacked, as a pod's TPU or GPU holds them (layer_params "auto" would pick the
  per-layer layout of the CPU the plan compiles on: another program, and 80 layers traced one by one).
  """
  cfgs = tuple(
    load_config(d, args.dtype)[0].replace(layer_params="stacked") for d in (args.student, args.teacher)
  )
  context = min(c.max_position_embeddings for c in cfgs)
  if args.max_len > context:
    raise PlanError(
      f"--max-len {args.max_len} exceeds the models' context of {context} positions "
      "(max_position_embeddings); lower --max-len"
    )
  return cfgs  # type: ignore[return-value]


def padded_batch(batch: int, mesh: dict[str, int]) -> int:
  """Rows rounded up to a multiple of the 'data' axis, as sweeps pad them (inactive rows)."""
  data = mesh.get("data", 1)
  return -(-batch // data) * data


def arithmetic(
  cfgs: tuple[DecoderConfig, DecoderConfig],
  rules: tuple[str, str],
  mesh: dict[str, int],
  batch: int,
  max_len: int,
) -> tuple[ModelMemory, ModelMemory]:
  """(student, teacher) bytes per device under these rules, mesh and shape."""
  return tuple(  # type: ignore[return-value]
    model_memory(cfg, rules_named("--rules", name), mesh, batch, max_len) for cfg, name in zip(cfgs, rules)
  )


def make_plan(args: PlanArgs, log: TextIO | None = None) -> Plan:
  cfgs = load_configs(args)
  batch = padded_batch(args.batch_size, args.mesh)
  rules = (args.student_rules, args.teacher_rules)
  student, teacher = arithmetic(cfgs, rules, args.mesh, batch, args.max_len)
  compiled = None
  if args.compile:
    if log is not None:
      print(f"compiling the guided loop on {args.devices} fake CPU devices ...", file=log, flush=True)
    named = tuple(rules_named(f, n) for f, n in zip(("--student-rules", "--teacher-rules"), rules))
    compiled = compile_loop(*cfgs, named, args.mesh, batch, args.max_len)  # type: ignore[arg-type]
  return Plan(args, batch, cfgs, student, teacher, compiled)


def run(args: PlanArgs, out: TextIO) -> Plan:
  import sys

  from experiments.plan.report import write_report

  plan = make_plan(args, log=sys.stderr)
  write_report(plan, out)
  return plan

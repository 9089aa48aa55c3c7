"""CLI: will a student + teacher pairing fit a pod's memory? Decided from config.json files alone.

  python -m experiments.plan --student DIR --teacher DIR --devices N --mesh-data D --mesh-model M
      --student-rules R --teacher-rules R --batch-size B --max-len T --dtype DT --hbm-gib G
      [--hbm-gbps BW] [--no-compile]

Prints per device the weights, both KV caches, the compiled program's temporaries, the total and
whether it fits; the last line of stdout is one JSON object. The flags are parsed before jax is
imported, so the compile runs on N fake CPU devices (XLA_FLAGS). Bad input: `error: ...`, exit 2.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import re
import sys
from typing import NoReturn

from model.errors import UserError, report_user_errors

DTYPES = ("bfloat16", "float16", "float32")
DEFAULT_HBM_GBPS = 819.0  # a TPU v5e chip (16 GiB of HBM): the default --hbm-gib's device


class PlanError(UserError):
  """A plan's flags that cannot describe a mesh, a shape or a device."""


class _Parser(argparse.ArgumentParser):
  def error(self, message: str) -> NoReturn:  # argparse's usage + exit 2 -> the one-line contract
    raise PlanError(f"{message} (python -m experiments.plan --help lists the flags)")


@dataclasses.dataclass(frozen=True)
class PlanArgs:
  student: str
  teacher: str
  devices: int
  mesh: dict[str, int]  # {'data': D, 'model': M}, -1 resolved
  student_rules: str
  teacher_rules: str
  batch_size: int  # as asked; the plan rounds it up to a multiple of data, as sweeps do
  max_len: int
  dtype: str
  hbm_gib: float
  hbm_gbps: float
  compile: bool
  verbose: bool = False


def parser() -> argparse.ArgumentParser:
  p = _Parser(prog="python -m experiments.plan", description=__doc__.split("\n\n")[0])
  p.add_argument("--student", required=True, help="student model directory (only config.json is read)")
  p.add_argument("--teacher", required=True, help="teacher model directory (only config.json is read)")
  p.add_argument("--devices", type=int, help="devices in the mesh (default: data x model)")
  p.add_argument("--mesh-data", type=int, default=1, help="'data' axis size (rows); -1 = the rest")
  p.add_argument(
    "--mesh-model", type=int, default=-1, help="'model' axis size (tensor parallel); -1 = the rest"
  )
  p.add_argument(
    "--student-rules", default="replicated", help="configs/sharding_rules.py name (default replicated)"
  )
  p.add_argument("--teacher-rules", default="tensor_parallel", help="configs/sharding_rules.py name")
  p.add_argument("--batch-size", type=int, required=True, help="rows per loop call")
  p.add_argument("--max-len", type=int, required=True, help="buffer length T: prompt + new tokens")
  p.add_argument("--dtype", default="bfloat16", choices=DTYPES)
  p.add_argument("--hbm-gib", type=float, required=True, help="memory of one device, GiB")
  p.add_argument(
    "--hbm-gbps",
    type=float,
    default=DEFAULT_HBM_GBPS,
    help=f"memory bandwidth, GB/s (default {DEFAULT_HBM_GBPS:g})",
  )
  p.add_argument(
    "--no-compile",
    dest="compile",
    action="store_false",
    help="arithmetic only: weights and caches, no compiled program (no temporaries, seconds not minutes)",
  )
  p.add_argument(
    "--verbose", action="store_true", help="show jax's backend probing and XLA's compile warnings"
  )
  return p


def parse(argv=None) -> PlanArgs:
  """Flags -> PlanArgs, every check that needs no model done here."""
  return validate(parser().parse_args(argv))


def _devices(a: argparse.Namespace) -> int | None:
  """--devices, or data x model where neither is -1 (None: not known)."""
  if a.devices is not None:
    return a.devices
  return None if -1 in (a.mesh_data, a.mesh_model) else a.mesh_data * a.mesh_model


def validate(a: argparse.Namespace) -> PlanArgs:
  for flag, path in (("--student", a.student), ("--teacher", a.teacher)):
    if not os.path.isdir(path):
      raise PlanError(f"{flag}: {path} does not exist; pass a model directory (only its config.json is read)")
    if not os.path.isfile(os.path.join(path, "config.json")):
      raise PlanError(f"{flag}: {path} has no config.json; pass a Hugging Face model directory")
  from model.sharding import mesh_sizes  # imports jax: after use_fake_devices

  if a.batch_size < 1:
    raise PlanError(f"--batch-size must be at least 1, got {a.batch_size}")
  if a.max_len < 2:
    raise PlanError(f"--max-len must be at least 2 (a prompt token and a new one), got {a.max_len}")
  for flag, value in (("--hbm-gib", a.hbm_gib), ("--hbm-gbps", a.hbm_gbps)):
    if not value > 0:
      raise PlanError(f"{flag} must be positive, got {value:g}")
  shape = {"data": a.mesh_data, "model": a.mesh_model}
  devices = _devices(a)
  if devices is None:
    raise PlanError("pass --devices N, or give both --mesh-data and --mesh-model (no -1)")
  if devices < 1:
    raise PlanError(f"--devices must be at least 1, got {devices}")
  mesh = mesh_sizes(shape, devices)
  for flag, name in (("--student-rules", a.student_rules), ("--teacher-rules", a.teacher_rules)):
    rules_named(flag, name)
  return PlanArgs(
    student=a.student,
    teacher=a.teacher,
    devices=devices,
    mesh=mesh,
    student_rules=a.student_rules,
    teacher_rules=a.teacher_rules,
    batch_size=a.batch_size,
    max_len=a.max_len,
    dtype=a.dtype,
    hbm_gib=a.hbm_gib,
    hbm_gbps=a.hbm_gbps,
    compile=a.compile,
    verbose=a.verbose,
  )


def rules_named(flag: str, name: str):
  from configs.sharding_rules import RULES

  if name not in RULES:
    raise PlanError(f"{flag}: unknown sharding rules {name!r}; choose one of {sorted(RULES)}")
  return RULES[name]


def use_fake_devices(n: int, verbose: bool = False) -> None:
  """Before jax starts: n CPU devices for the compile (a flag of XLA_FLAGS already set is replaced).

  Not verbose: XLA's C++ warnings off (the SPMD partitioner's notes on resharding one layer's cache
  slice, whose memory the plan reports anyway), unless TF_CPP_MIN_LOG_LEVEL is set."""
  flags = re.sub(r"--xla_force_host_platform_device_count=\S+", "", os.environ.get("XLA_FLAGS", ""))
  os.environ["XLA_FLAGS"] = f"{flags.strip()} --xla_force_host_platform_device_count={n}".strip()
  os.environ["JAX_PLATFORMS"] = "cpu"
  if not verbose:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def main(argv=None) -> None:
  flags = report_user_errors(lambda: parser().parse_args(argv))
  n = _devices(flags)
  if flags.compile and n is not None and n > 0:  # before anything imports jax
    use_fake_devices(n, flags.verbose)
  args = report_user_errors(lambda: validate(flags))
  from model.startup_logs import quiet_startup_logs

  quiet_startup_logs(args.verbose)
  from experiments.plan.run import run

  report_user_errors(lambda: run(args, out=sys.stdout))

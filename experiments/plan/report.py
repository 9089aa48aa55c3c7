"""A plan as text, per device, and as the one JSON object on the last line of stdout."""

from __future__ import annotations

import json
from typing import TextIO

from experiments.plan.advice import suggestions
from experiments.plan.cli import rules_named
from experiments.plan.memory import GIB, kv_heads_note, step_ms
from experiments.plan.run import Plan


def _gib(n: int | None) -> float | None:
  return None if n is None else round(n / GIB, 6)


def _size(n: int) -> str:
  """Bytes in the largest unit that keeps a digit before the point (tiny test models too)."""
  for unit, scale in (("GiB", GIB), ("MiB", 2**20), ("KiB", 2**10)):
    if n >= scale:
      return f"{n / scale:7.2f} {unit}"
  return f"{n:7d} B  "


def _count(n: int) -> str:
  return next((f"{n / s:.2f}{u}" for u, s in (("B", 1e9), ("M", 1e6), ("K", 1e3)) if n >= s), str(n))


def summary(plan: Plan) -> dict:
  """The JSON object: sizes in GiB per device (every device holds the same: splits are even)."""
  a, s, t = plan.args, plan.student, plan.teacher
  gbps = a.hbm_gbps
  student_step, teacher_step = s.step_bytes, s.step_bytes + t.step_bytes
  return {
    "weights_gib": _gib(plan.weight_bytes),
    "student_weights_gib": _gib(s.weight_bytes),
    "teacher_weights_gib": _gib(t.weight_bytes),
    "student_cache_gib": _gib(s.cache_bytes),
    "teacher_cache_gib": _gib(t.cache_bytes),
    "temporaries_gib": _gib(plan.compiled.temp_bytes) if plan.compiled else None,
    "loop_state_gib": _gib(plan.state_bytes),
    "per_device_gib": _gib(plan.total_bytes),
    "per_device_bytes": plan.total_bytes,
    "hbm_gib": a.hbm_gib,
    "fits": plan.fits,
    "compiled": plan.compiled is not None,
    "compile_s": round(plan.compiled.seconds, 2) if plan.compiled else None,
    "devices": a.devices,
    "mesh": a.mesh,
    "batch_size": plan.batch,
    "max_len": a.max_len,
    "dtype": a.dtype,
    "student_rules": a.student_rules,
    "teacher_rules": a.teacher_rules,
    "student_params": s.params,
    "teacher_params": t.params,
    "student_cache_spec": str(s.cache_spec),
    "teacher_cache_spec": str(t.cache_spec),
    "hbm_gbps": gbps,
    "student_step_bytes": student_step,
    "teacher_step_bytes": teacher_step,
    "student_step_ms": round(step_ms(student_step, gbps), 6),
    "teacher_step_ms": round(step_ms(teacher_step, gbps), 6),
    "suggestions": suggestions(plan),
  }


def _temporaries(plan: Plan) -> list[str]:
  c = plan.compiled
  if c is None:
    return ["  temporaries  not compiled (--no-compile): weights and caches only"]
  how = "compiled.memory_analysis() on XLA:CPU"
  if plan.args.dtype == "bfloat16":
    how += "; bfloat16 compiled as float16, the same bytes"
  return [
    f"  temporaries  {_size(c.temp_bytes)}  ({how})",
    f"  loop state   {_size(plan.state_bytes or 0)}  (token buffers, counters: inputs and outputs)",
  ]


def write_report(plan: Plan, out: TextIO) -> dict:
  a, info = plan.args, summary(plan)
  g = _size
  lines = [
    f"plan: {a.devices} devices (data {a.mesh['data']} x model {a.mesh['model']}), batch {plan.batch}"
    + (f" (--batch-size {a.batch_size} padded to a multiple of data)" if plan.batch != a.batch_size else "")
    + f" x {a.max_len} positions, {a.dtype}",
  ]
  for who, path, rules, mem, cfg in zip(
    ("student", "teacher"),
    (a.student, a.teacher),
    (a.student_rules, a.teacher_rules),
    (plan.student, plan.teacher),
    plan.configs,
  ):
    note = kv_heads_note(cfg, mem, a.mesh, rules_named(f"--{who}-rules", rules))
    lines.append(
      f"  {who}: {path} ({cfg.family}, {_count(mem.params)} params), rules {rules}, "
      f"cache [L, B, K, T, D] split {mem.cache_spec}" + (f" ({note})" if note else "")
    )
  c = plan.compiled
  lines += [
    "per device:",
    f"  weights      student {g(plan.student.weight_bytes)}   teacher {g(plan.teacher.weight_bytes)}",
    f"  KV caches    student {g(plan.student.cache_bytes)}   teacher {g(plan.teacher.cache_bytes)}",
    *_temporaries(plan),
  ]
  free = a.hbm_gib * GIB - plan.total_bytes
  verdict = (
    f"fits ({_size(int(free)).strip()} free)"
    if plan.fits
    else f"does not fit ({_size(int(-free)).strip()} over)"
  )
  lines.append(f"  total        {g(plan.total_bytes)} of {a.hbm_gib:g} GiB: {verdict}")
  if c:
    lines.append(f"compile: {c.seconds:.1f} s (lower + compile, {a.devices} fake CPU devices)")
  lines.append(
    f"roofline at {a.hbm_gbps:g} GB/s, a step at the buffer's end (weights + all {a.max_len} cache positions; "
    f"earlier steps read less): student alone {_size(info['student_step_bytes']).strip()} -> "
    f"{info['student_step_ms']:.3g} ms, with the teacher {_size(info['teacher_step_bytes']).strip()} -> "
    f"{info['teacher_step_ms']:.3g} ms"
  )
  if info["suggestions"]:
    lines.append("what would fit:")
    lines += [f"  - {s}" for s in info["suggestions"]]
  for line in lines:
    print(line, file=out)
  print(json.dumps(info), file=out, flush=True)
  return info

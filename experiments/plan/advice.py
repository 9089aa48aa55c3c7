"""What would fit, when a plan does not: the same arithmetic over other rules, batches and meshes.

Each suggestion keeps the compiled program's temporaries and loop state as measured for the plan
(they shrink with the batch and the devices, so the numbers err on the safe side) and is only
offered if it fits; one flag changed at a time where that is enough.
"""

from __future__ import annotations

from experiments.plan.memory import GIB
from experiments.plan.run import Plan, arithmetic

SHARDED = "tensor_parallel"
MAX_DEVICES = 8192


def _total(plan: Plan, rules: tuple[str, str], mesh: dict[str, int], batch: int) -> int:
  s, t = arithmetic(plan.configs, rules, mesh, batch, plan.args.max_len)
  return s.weight_bytes + t.weight_bytes + s.cache_bytes + t.cache_bytes + plan.extra_bytes


def _gib(n: int) -> str:
  return f"{n / GIB:.2f} GiB per device"


def _flags(rules: tuple[str, str], old: tuple[str, str]) -> str:
  return "".join(
    f" --{who}-rules {new}" for who, new, was in zip(("student", "teacher"), rules, old) if new != was
  )


def _more_devices(plan: Plan, rules: tuple[str, str], limit: float) -> str:
  """The smallest 'model' axis (doubling) that fits under `rules`, as flags ('' if none does)."""
  mesh, old = dict(plan.args.mesh), (plan.args.student_rules, plan.args.teacher_rules)
  data, model = mesh.get("data", 1), mesh.get("model", 1) * 2
  while data * model <= MAX_DEVICES:
    need = _total(plan, rules, {**mesh, "model": model}, plan.batch)
    if need <= limit:
      return f"more devices: --devices {data * model} --mesh-model {model}{_flags(rules, old)} ({_gib(need)})"
    model *= 2
  return ""


def suggestions(plan: Plan) -> list[str]:
  """Ways to fit, best first: shard a replicated model, a smaller batch, more devices."""
  if plan.fits:
    return []
  args, limit = plan.args, plan.args.hbm_gib * GIB
  rules, mesh, data = (args.student_rules, args.teacher_rules), dict(args.mesh), args.mesh.get("data", 1)
  out: list[str] = []
  sharded = (SHARDED, SHARDED)
  if mesh.get("model", 1) > 1:
    for i, who in enumerate(("student", "teacher")):
      if rules[i] != SHARDED:
        new = tuple(SHARDED if j == i else r for j, r in enumerate(rules))
        need = _total(plan, new, mesh, plan.batch)  # type: ignore[arg-type]
        if need <= limit:
          out.append(f"shard the {who} over 'model': --{who}-rules {SHARDED} ({_gib(need)})")
    if rules != sharded and not out and _total(plan, sharded, mesh, plan.batch) <= limit:
      out.append(
        f"shard both models:{_flags(sharded, rules)} ({_gib(_total(plan, sharded, mesh, plan.batch))})"
      )
  fits = [k * data for k in range(1, plan.batch // data) if _total(plan, rules, mesh, k * data) <= limit]
  if fits:
    out.append(f"a smaller batch: --batch-size {fits[-1]} ({_gib(_total(plan, rules, mesh, fits[-1]))})")
  sharding_fits = any(s.startswith("shard") for s in out)
  for candidate in [rules] if sharding_fits else list(dict.fromkeys([rules, sharded])):
    found = _more_devices(plan, candidate, limit)
    if found:
      out.append(found)
      break
  if not out:
    weights = plan.weight_bytes / GIB
    out.append(f"nothing tried fits: the weights alone take {weights:.2f} GiB per device here")
  return out

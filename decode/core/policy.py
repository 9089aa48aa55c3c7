"""Intervention policies as data: per-row arrays, so one compiled loop serves any mix of policies.

A policy decides, at each step start, whether the teacher writes the coming step:

  teacher writes step k  <=>  step_lo <= k < step_hi                      (timing window)
                          or  trigger fires and fewer than `budget` triggered steps so far
and the teacher writes at most `token_limit` tokens of that step (a hint), the student the rest.

Spec strings (CLI and configs):
  never | always | step:K[,n=N] | hint:K[,m=M] | entropy:T | maxprob:T | margin:T | random:P
  entropy:q=R | maxprob:q=R | margin:q=R   (calibrated: fire at rate R of the student's step starts;
                                            the sweep sets T from its student-only rows)
  Trigger specs accept ",budget=B" (most triggered steps per row) and ",m=M" (hint-sized help).
"""

from __future__ import annotations

import dataclasses
import re

import flax.struct
import jax.numpy as jnp
import numpy as np

from decode.errors import PolicyError

NO_LIMIT = np.int32(2**30)

TRIGGER_NONE, TRIGGER_ENTROPY, TRIGGER_MAXPROB, TRIGGER_MARGIN, TRIGGER_RANDOM = range(5)
_TRIGGERS = {
  "entropy": TRIGGER_ENTROPY,
  "maxprob": TRIGGER_MAXPROB,
  "margin": TRIGGER_MARGIN,
  "random": TRIGGER_RANDOM,
}


@dataclasses.dataclass(frozen=True)
class Policy:
  """One row's policy, host side. `spec` is the canonical string."""

  spec: str
  step_lo: int = 0
  step_hi: int = 0
  trigger: int = TRIGGER_NONE
  threshold: float = 0.0
  budget: int = int(NO_LIMIT)
  token_limit: int = int(NO_LIMIT)
  # A calibrated trigger (`entropy:q=0.3`): fire at this fraction of the student's step starts. The
  # threshold is unknown (NaN) until `calibrated` sets it from student-only runs.
  rate: float | None = None

  @property
  def needs_teacher(self) -> bool:
    return self.step_hi > self.step_lo or self.trigger != TRIGGER_NONE

  @property
  def needs_calibration(self) -> bool:
    return self.rate is not None and self.threshold != self.threshold  # NaN: not calibrated yet

  def calibrated(self, threshold: float) -> Policy:
    """The same policy (same spec, so the same rows) with its threshold resolved."""
    return dataclasses.replace(self, threshold=float(threshold))


@flax.struct.dataclass
class PolicyArrays:
  """Per-row policy parameters, all [B]: traced, so changing them never recompiles."""

  step_lo: jnp.ndarray
  step_hi: jnp.ndarray
  trigger: jnp.ndarray
  threshold: jnp.ndarray
  budget: jnp.ndarray
  token_limit: jnp.ndarray

  @staticmethod
  def stack(policies: list[Policy]) -> "PolicyArrays":
    for p in policies:
      if p.needs_calibration:
        raise PolicyError(
          f"policy {p.spec!r} sets a rate, not a threshold: calibrate it from student-only runs first "
          "(sweeps do, from their `never` rows; or give a threshold, e.g. entropy:2.0)"
        )
    col = lambda f, dt: np.asarray([getattr(p, f) for p in policies], dt)
    return PolicyArrays(
      step_lo=col("step_lo", np.int32),
      step_hi=col("step_hi", np.int32),
      trigger=col("trigger", np.int32),
      threshold=col("threshold", np.float32),
      budget=col("budget", np.int32),
      token_limit=col("token_limit", np.int32),
    )


_NUM = r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?"


def _options(text: str, spec: str, allowed: set[str]) -> dict[str, float]:
  out = {}
  for part in filter(None, text.split(",")):
    m = re.fullmatch(rf"\s*(\w+)\s*=\s*({_NUM})\s*", part)
    if not m or m.group(1) not in allowed:
      raise PolicyError(
        f"policy {spec!r}: bad option {part.strip()!r}; allowed: {', '.join(sorted(allowed))}"
      )
    out[m.group(1)] = float(m.group(2))
  return out


def _positive_int(value: float, what: str, spec: str) -> int:
  if value != int(value) or value < 1 or value >= 2**24:
    raise PolicyError(f"policy {spec!r}: {what} must be an integer in [1, 2^24), got {value:g}")
  return int(value)


def _shortest(value: float) -> str:
  """Shortest text that parses back to `value` ('2', '2.5', '2.1234567'): distinct thresholds stay distinct."""
  text = repr(float(value))
  return text[:-2] if text.endswith(".0") else text


def _trigger_options(text: str, spec: str) -> tuple[int, int, str]:
  """A trigger's `,budget=B` and `,m=M`: (budget, token limit, their canonical suffix)."""
  opts = _options(text, spec, {"budget", "m"})
  budget = _positive_int(opts["budget"], "budget", spec) if "budget" in opts else int(NO_LIMIT)
  limit = _positive_int(opts["m"], "m", spec) if "m" in opts else int(NO_LIMIT)
  suffix = (f",budget={budget}" if "budget" in opts else "") + (f",m={limit}" if "m" in opts else "")
  return budget, limit, suffix


def parse_policy(spec: str) -> Policy:
  """Parses one spec string; errors name the spec and the accepted forms."""
  s = spec.strip().lower()
  if s == "never":
    return Policy("never")
  if s == "always":
    return Policy("always", step_lo=1, step_hi=int(NO_LIMIT))
  m = re.fullmatch(rf"(step|hint):\s*({_NUM})\s*((?:,[^,]+)*)", s)
  if m:
    kind, k = m.group(1), _positive_int(float(m.group(2)), "K (the step, 1 = first)", spec)
    if kind == "step":
      opts = _options(m.group(3), spec, {"n", "m"})
      n = _positive_int(opts.get("n", 1), "n", spec)
      limit = _positive_int(opts["m"], "m", spec) if "m" in opts else int(NO_LIMIT)
      canon = f"step:{k}" + (f",n={n}" if n != 1 else "") + (f",m={limit}" if "m" in opts else "")
      return Policy(canon, step_lo=k, step_hi=k + n, token_limit=limit)
    opts = _options(m.group(3), spec, {"m"})
    limit = _positive_int(opts.get("m", 8), "m", spec)
    return Policy(f"hint:{k},m={limit}", step_lo=k, step_hi=k + 1, token_limit=limit)
  m = re.fullmatch(rf"(entropy|maxprob|margin):\s*q\s*=\s*({_NUM})\s*((?:,[^,]+)*)", s)
  if m:
    kind, q = m.group(1), float(m.group(2))
    if not 0.0 < q < 1.0:
      raise PolicyError(f"policy {spec!r}: q (the rate at which the trigger fires) must be in (0, 1)")
    budget, limit, suffix = _trigger_options(m.group(3), spec)
    canon = f"{kind}:q={_shortest(q)}{suffix}"
    return Policy(
      canon, trigger=_TRIGGERS[kind], threshold=float("nan"), budget=budget, token_limit=limit, rate=q
    )
  m = re.fullmatch(rf"(entropy|maxprob|margin|random):\s*({_NUM})\s*((?:,[^,]+)*)", s)
  if m:
    kind, thr = m.group(1), float(m.group(2))
    if kind == "random" and not 0.0 <= thr <= 1.0:
      raise PolicyError(f"policy {spec!r}: random:P needs 0 <= P <= 1")
    budget, limit, suffix = _trigger_options(m.group(3), spec)
    return Policy(
      f"{kind}:{_shortest(thr)}{suffix}",
      trigger=_TRIGGERS[kind],
      threshold=thr,
      budget=budget,
      token_limit=limit,
    )
  raise PolicyError(
    f"unknown policy {spec!r}; use one of: never, always, step:K[,n=N], hint:K[,m=M], "
    "entropy:T, maxprob:T, margin:T (or entropy:q=RATE, calibrated), random:P (triggers take ,budget=B and ,m=M)"
  )

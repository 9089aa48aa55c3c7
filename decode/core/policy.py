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
import math
import re

import flax.struct
import jax.numpy as jnp
import numpy as np

from decode.errors import PolicyError

NO_LIMIT = np.int32(2**30)  # 'no limit' for every per-row limit (steps, budget, tokens of a step)

# The canonical specs of the two references every table is read against (the student alone, the
# teacher writing everything). Results hold canonical specs, so a record's policy equals one of these
# exactly when `parse_policy` gives that policy.
STUDENT_ONLY, TEACHER_ONLY = "never", "always"

TRIGGER_NONE, TRIGGER_ENTROPY, TRIGGER_MAXPROB, TRIGGER_MARGIN, TRIGGER_RANDOM = range(5)
_TRIGGERS = {
  "entropy": TRIGGER_ENTROPY,
  "maxprob": TRIGGER_MAXPROB,
  "margin": TRIGGER_MARGIN,
  "random": TRIGGER_RANDOM,
}


class PolicyRule:
  """The one policy rule, written once over plain operators (comparisons, `&`, `|`; no `~`, no
  `where`), so the same code runs on a host `Policy` (Python scalars), on host rows of
  `PolicyArrays` (numpy: the text bridge) and on traced `PolicyArrays` inside the loop (jnp).

  `step` is the coming step (1-based). Uncertainties not computed are NaN, and compare False.
  """

  def student_only(self):
    """The teacher never writes: no timing window and no trigger (`never`)."""
    return (self.trigger == TRIGGER_NONE) & (self.step_hi <= self.step_lo)

  def uncertainty_trigger(self):
    """Fires on the student's step-start uncertainty (entropy, max prob or margin)."""
    return (self.trigger >= TRIGGER_ENTROPY) & (self.trigger <= TRIGGER_MARGIN)

  def random_trigger(self):
    """Fires on the policy's own uniform draw (random:P, the matched control)."""
    return self.trigger == TRIGGER_RANDOM

  def records_uncertainty(self):
    """Rows that record the student's step-start uncertainty: the rows that compute it for
    themselves (uncertainty triggers) and student-only rows (their values calibrate `q=` triggers).
    A random:P row does not read it, so it records none: a row's fields never depend on its batch."""
    return self.uncertainty_trigger() | self.student_only()

  def in_window(self, step):
    """The timing window gives the coming step to the teacher."""
    return (step >= self.step_lo) & (step < self.step_hi)

  def trigger_fires(self, step, entropy, maxprob, margin, uniform, triggered):
    """A trigger gives the coming step to the teacher: it fires, its budget has room, and the
    step is not the window's already. `triggered`: steps the trigger gave away so far."""
    fires = (
      (self.trigger == TRIGGER_ENTROPY) & (entropy > self.threshold)
      | (self.trigger == TRIGGER_MAXPROB) & (maxprob < self.threshold)
      | (self.trigger == TRIGGER_MARGIN) & (margin < self.threshold)
      | (self.trigger == TRIGGER_RANDOM) & (uniform < self.threshold)
    )
    outside_window = (step < self.step_lo) | (step >= self.step_hi)
    return fires & (triggered < self.budget) & outside_window

  def teacher_writes(self, step, entropy, maxprob, margin, uniform, triggered):
    """At a step start: (the teacher writes the coming step, a trigger gave it away)."""
    fired = self.trigger_fires(step, entropy, maxprob, margin, uniform, triggered)
    return self.in_window(step) | fired, fired

  def hands_back(self, step_teacher_tokens):
    """The teacher has written its token limit of this step (a hint): the student writes the rest."""
    return step_teacher_tokens >= self.token_limit


@dataclasses.dataclass(frozen=True)
class Policy(PolicyRule):
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
    return not self.student_only()

  @property
  def needs_calibration(self) -> bool:
    return self.rate is not None and self.threshold != self.threshold  # NaN: not calibrated yet

  def calibrated(self, threshold: float) -> Policy:
    """The same policy (same spec, so the same rows) with its threshold resolved."""
    return dataclasses.replace(self, threshold=float(threshold))

  @property
  def uncertainty_column(self) -> int | None:
    """Column of a row's `step_uncertainty` ([entropy, max prob, margin]) this trigger reads."""
    return self.trigger - TRIGGER_ENTROPY if self.uncertainty_trigger() else None

  @property
  def fires_above(self) -> bool:
    """The trigger fires above its threshold (entropy), not below it (max prob, margin, random)."""
    return self.trigger == TRIGGER_ENTROPY

  @property
  def fixed_timing(self) -> bool:
    """Steps given by the timing window alone (never, always, step:K, hint:K): no trigger."""
    return self.trigger == TRIGGER_NONE

  def next_window_step(self, steps_done: int) -> int | None:
    """The first step after the coming one (steps_done + 1) that the window gives the teacher."""
    k = max(self.step_lo, steps_done + 2)
    return k if k < self.step_hi else None

  @property
  def whole_step(self) -> int | None:
    """K of a "teacher writes all of step K, once" policy ('step:K', 'step:K,n=1'), else None:
    the points of the paper's step curve (never, always, n > 1, hints and triggers give None)."""
    single = self.fixed_timing and 1 <= self.step_lo and self.step_hi == self.step_lo + 1
    return self.step_lo if single and self.token_limit == int(NO_LIMIT) else None

  @property
  def last_teacher_step(self) -> int | None:
    """The last step a fixed-timing policy lets the teacher write (K for step:K and hint:K, K+N-1
    for step:K,n=N); None for never, always and triggers (no fixed last step)."""
    fixed = self.fixed_timing and 1 <= self.step_lo < self.step_hi < int(NO_LIMIT)
    return self.step_hi - 1 if fixed else None

  @property
  def forkable(self) -> bool:
    """A pure timing policy whose rows can start from the student's own run: the teacher cannot act
    before step `step_lo` (>= 2), or never acts."""
    return self.fixed_timing and (self.step_lo >= 2 or self.step_hi <= self.step_lo)

  def matched_random(self, rate: float, digits: int) -> Policy:
    """This trigger's matched control: random:P at its realized `rate` (rounded to `digits`, so a
    resumed sweep names the same rows), with the trigger's budget and token limit (m), so the two
    differ only in when the teacher steps in."""
    opts = f",budget={self.budget}" if self.budget < int(NO_LIMIT) else ""
    opts += f",m={self.token_limit}" if self.token_limit < int(NO_LIMIT) else ""
    return parse_policy(f"random:{round(float(rate), digits):g}{opts}")

  def reading_order(self) -> tuple:
    """Tables' order: never, step:1..K (and step:K,n=N), hints, triggers (entropy, maxprob, margin,
    random), always last; within a family by the policy's numbers, no limit counting as infinite."""
    limit = lambda v: math.inf if v >= int(NO_LIMIT) else float(v)
    if not self.fixed_timing:
      return (2 + self.trigger, (self.threshold, limit(self.budget), limit(self.token_limit)), self.spec)
    if self.student_only():
      return (0, (), self.spec)
    if self.step_hi >= int(NO_LIMIT):
      return (9, (), self.spec)
    rank = 1 if self.token_limit >= int(NO_LIMIT) else 2
    return (rank, (self.step_lo, self.step_hi - self.step_lo, limit(self.token_limit)), self.spec)


@flax.struct.dataclass
class PolicyArrays(PolicyRule):
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
  if s == STUDENT_ONLY:
    return Policy(STUDENT_ONLY)
  if s == TEACHER_ONLY:
    return Policy(TEACHER_ONLY, step_lo=1, step_hi=int(NO_LIMIT))
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

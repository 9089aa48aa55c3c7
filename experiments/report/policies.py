"""What the analysis reads from a policy string, and the reading order of tables.

`decode.core.policy.parse_policy` is the one policy grammar; here it answers two questions: is the
policy a point of the paper's step curve (`intervention_step`: the teacher writes all of step K,
once) and which step is the last the teacher writes (`last_teacher_step`, the leakage cut-off).
`policy_sort_key` and `natural_sort_key` put policies and checkpoint labels in reading order.
"""

from __future__ import annotations

import math
import re
from typing import Any

import numpy as np

from decode.core.policy import (
  NO_LIMIT,
  TRIGGER_ENTROPY,
  TRIGGER_MARGIN,
  TRIGGER_MAXPROB,
  TRIGGER_NONE,
  TRIGGER_RANDOM,
  Policy,
  parse_policy,
)
from decode.errors import PolicyError
from experiments.report.loading import NO_LABEL


def _policy(policy: str) -> Policy:
  """`decode.core.policy.parse_policy`, the one policy grammar; an error names the policy in the results."""
  try:
    return parse_policy(policy)
  except PolicyError as err:
    raise PolicyError(f"malformed policy {policy!r} in the results: {err}") from err


def intervention_step(policy: str) -> int | None:
  """K of a "teacher writes all of step K, once" policy ('step:K', 'step:K,n=1'), else None.

  Only those are points on the paper's step curve: several steps (n > 1), part of a step
  (hint:K, step:K,m=M), triggers, never and always give None. A policy that parse_policy
  rejects raises PolicyError (a ValueError) naming it.
  """
  p = _policy(policy)
  whole_single_step = (
    p.trigger == TRIGGER_NONE
    and p.step_lo >= 1
    and p.step_hi == p.step_lo + 1
    and p.token_limit == int(NO_LIMIT)
  )
  return p.step_lo if whole_single_step else None


def last_teacher_step(policy: str) -> int | None:
  """The last step a fixed-timing policy lets the teacher write: K for step:K and hint:K, K+N-1
  for step:K,n=N; None for never, always and triggers (no fixed last step).

  A problem is leak-free for the policy when its gold solution has more steps than this.
  """
  p = _policy(policy)
  fixed = p.trigger == TRIGGER_NONE and p.step_lo >= 1 and p.step_lo < p.step_hi < int(NO_LIMIT)
  return p.step_hi - 1 if fixed else None


# Reading order of policy families; within a family, by the policy's numbers.
_RANK_NEVER, _RANK_STEP, _RANK_HINT, _RANK_ALWAYS = 0, 1, 2, 9
_TRIGGER_RANK = {TRIGGER_ENTROPY: 3, TRIGGER_MAXPROB: 4, TRIGGER_MARGIN: 5, TRIGGER_RANDOM: 6}


def _limit(value: int) -> float:
  return math.inf if value >= int(NO_LIMIT) else float(value)


def policy_sort_key(policy: str) -> tuple:
  """Reading order for tables: never, step:1..K (and step:K,n=N), hints, triggers, always last.

  Within a family by the parsed numbers (step, number of steps, token limit; triggers by threshold,
  budget, token limit), no limit counting as infinite. Raises like `intervention_step`.
  """
  p = _policy(policy)
  if p.trigger != TRIGGER_NONE:
    return (_TRIGGER_RANK[p.trigger], (p.threshold, _limit(p.budget), _limit(p.token_limit)), p.spec, policy)
  if not p.needs_teacher:
    return (_RANK_NEVER, (), p.spec, policy)
  if p.step_hi >= int(NO_LIMIT):
    return (_RANK_ALWAYS, (), p.spec, policy)
  rank = _RANK_STEP if p.token_limit >= int(NO_LIMIT) else _RANK_HINT
  return (rank, (p.step_lo, p.step_hi - p.step_lo, _limit(p.token_limit)), p.spec, policy)


def natural_sort_key(label: Any) -> tuple:
  """'step_2000' < 'step_10000'; missing labels first."""
  if label is None or (isinstance(label, float) and np.isnan(label)) or label == NO_LABEL:
    return (0,)
  parts = re.split(r"(\d+)", str(label))
  return (1, tuple((0, int(p)) if p.isdigit() else (1, p) for p in parts))

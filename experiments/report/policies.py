"""What the analysis reads from a policy string, and the reading order of tables.

`decode.core.policy.parse_policy` is the one policy grammar; here it answers two questions: is the
policy a point of the paper's step curve (`intervention_step`: the teacher writes all of step K,
once) and which step is the last the teacher writes (`last_teacher_step`, the leakage cut-off).
`policy_sort_key` and `natural_sort_key` put policies and checkpoint labels in reading order.
"""

from __future__ import annotations

import re
from typing import Any

import numpy as np

from decode.core.policy import Policy, parse_policy
from decode.errors import PolicyError
from experiments.report.loading import NO_LABEL


def _policy(policy: str) -> Policy:
  """`decode.core.policy.parse_policy`, the one policy grammar; an error names the policy in the results."""
  try:
    return parse_policy(policy)
  except PolicyError as err:
    raise PolicyError(f"malformed policy {policy!r} in the results: {err}") from err


def intervention_step(policy: str) -> int | None:
  """K of a "teacher writes all of step K, once" policy ('step:K', 'step:K,n=1'), else None
  (`Policy.whole_step`). A policy that parse_policy rejects raises PolicyError naming it."""
  return _policy(policy).whole_step


def last_teacher_step(policy: str) -> int | None:
  """The last step a fixed-timing policy lets the teacher write (`Policy.last_teacher_step`).

  A problem is leak-free for the policy when its gold solution has more steps than this.
  """
  return _policy(policy).last_teacher_step


def is_student_only(policy: str) -> bool:
  """The student alone (`never`): the row every guided row is paired with."""
  return bool(_policy(policy).student_only())


def policy_sort_key(policy: str) -> tuple:
  """Reading order for tables (`Policy.reading_order`): never, step:1..K, hints, triggers, always
  last; ties broken by the string as written. Raises like `intervention_step`."""
  return (*_policy(policy).reading_order(), policy)


def natural_sort_key(label: Any) -> tuple:
  """'step_2000' < 'step_10000'; missing labels first."""
  if label is None or (isinstance(label, float) and np.isnan(label)) or label == NO_LABEL:
    return (0,)
  parts = re.split(r"(\d+)", str(label))
  return (1, tuple((0, int(p)) if p.isdigit() else (1, p) for p in parts))

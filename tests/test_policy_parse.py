"""decode.core.policy: spec strings -> canonical Policy rows, their errors, and PolicyArrays.stack."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from decode.core.policy import (
  NO_LIMIT,
  TRIGGER_ENTROPY,
  TRIGGER_MARGIN,
  TRIGGER_MAXPROB,
  TRIGGER_NONE,
  TRIGGER_RANDOM,
  Policy,
  PolicyArrays,
  parse_policy,
)
from decode.errors import PolicyError

NL = int(NO_LIMIT)
assert NL == 2**30

# spec -> (canonical, step_lo, step_hi, trigger, threshold, budget, token_limit, needs_teacher)
VALID = {
  "never": ("never", 0, 0, TRIGGER_NONE, 0.0, NL, NL, False),
  " Never ": ("never", 0, 0, TRIGGER_NONE, 0.0, NL, NL, False),
  "always": ("always", 1, NL, TRIGGER_NONE, 0.0, NL, NL, True),
  "ALWAYS": ("always", 1, NL, TRIGGER_NONE, 0.0, NL, NL, True),
  "step:2": ("step:2", 2, 3, TRIGGER_NONE, 0.0, NL, NL, True),
  "STEP:2": ("step:2", 2, 3, TRIGGER_NONE, 0.0, NL, NL, True),
  "step: 2": ("step:2", 2, 3, TRIGGER_NONE, 0.0, NL, NL, True),
  "step:2.0": ("step:2", 2, 3, TRIGGER_NONE, 0.0, NL, NL, True),
  "step:1e1": ("step:10", 10, 11, TRIGGER_NONE, 0.0, NL, NL, True),
  "step:1": ("step:1", 1, 2, TRIGGER_NONE, 0.0, NL, NL, True),
  "step:2,n=1": ("step:2", 2, 3, TRIGGER_NONE, 0.0, NL, NL, True),
  "step:2,n=3": ("step:2,n=3", 2, 5, TRIGGER_NONE, 0.0, NL, NL, True),
  "step:2, n = 3": ("step:2,n=3", 2, 5, TRIGGER_NONE, 0.0, NL, NL, True),
  "step:2,m=4": ("step:2,m=4", 2, 3, TRIGGER_NONE, 0.0, NL, 4, True),
  "step:2,m=4,n=3": ("step:2,n=3,m=4", 2, 5, TRIGGER_NONE, 0.0, NL, 4, True),
  "step:16777215": ("step:16777215", 16777215, 16777216, TRIGGER_NONE, 0.0, NL, NL, True),
  "hint:3": ("hint:3,m=8", 3, 4, TRIGGER_NONE, 0.0, NL, 8, True),
  "hint:3,m=8": ("hint:3,m=8", 3, 4, TRIGGER_NONE, 0.0, NL, 8, True),
  "hint:3,m=2": ("hint:3,m=2", 3, 4, TRIGGER_NONE, 0.0, NL, 2, True),
  "entropy:2.50": ("entropy:2.5", 0, 0, TRIGGER_ENTROPY, 2.5, NL, NL, True),
  "Entropy:1": ("entropy:1", 0, 0, TRIGGER_ENTROPY, 1.0, NL, NL, True),
  "entropy:.5,budget=2": ("entropy:0.5,budget=2", 0, 0, TRIGGER_ENTROPY, 0.5, 2, NL, True),
  "entropy:1,m=4,budget=3": ("entropy:1,budget=3,m=4", 0, 0, TRIGGER_ENTROPY, 1.0, 3, 4, True),
  "maxprob:0.3": ("maxprob:0.3", 0, 0, TRIGGER_MAXPROB, 0.3, NL, NL, True),
  "maxprob:0.30,m=5": ("maxprob:0.3,m=5", 0, 0, TRIGGER_MAXPROB, 0.3, NL, 5, True),
  "margin:0.1,budget=1": ("margin:0.1,budget=1", 0, 0, TRIGGER_MARGIN, 0.1, 1, NL, True),
  "random:0": ("random:0", 0, 0, TRIGGER_RANDOM, 0.0, NL, NL, True),
  "random:1": ("random:1", 0, 0, TRIGGER_RANDOM, 1.0, NL, NL, True),
  "random:0.25,budget=3,m=2": ("random:0.25,budget=3,m=2", 0, 0, TRIGGER_RANDOM, 0.25, 3, 2, True),
}


@pytest.mark.parametrize("spec", list(VALID))
def test_parse_valid_spec(spec):
  canon, lo, hi, trigger, threshold, budget, limit, needs = VALID[spec]
  p = parse_policy(spec)
  assert p.spec == canon
  assert (p.step_lo, p.step_hi, p.trigger, p.budget, p.token_limit) == (lo, hi, trigger, budget, limit)
  assert p.threshold == pytest.approx(threshold, abs=0, rel=1e-12)
  assert p.needs_teacher is needs
  # The canonical spec is a fixed point and names the same policy.
  again = parse_policy(p.spec)
  assert again == p


ERRORS = [
  "sometimes",  # unknown kind
  "",
  "step",
  "step:",
  "stepp:2",
  "entropy:x",
  "entropy:inf",
  "step:0",  # K = 0 (steps count from 1)
  "hint:0",
  "step:-1",
  "step:1.5",  # K not an integer
  "step:16777216",  # K >= 2^24
  "hint:1e9",
  "step:2,n=0",
  "step:2,n=1.5",  # non-integer n
  "step:2,n=-1",
  "step:2,n=16777216",
  "step:2,m=0",
  "hint:3,m=0",
  "hint:3,m=2.5",
  "random:1.5",  # P outside [0, 1]
  "random:-0.1",
  "random:1.0001",
  "step:2,q=1",  # unknown option
  "step:2,budget=2",  # budget is for triggers only
  "hint:3,n=2",
  "hint:3,budget=1",
  "entropy:1,n=2",
  "entropy:1,budget=0",
  "entropy:1,budget=2.5",
  "maxprob:0.5,budget=16777216",
  "margin:0.1,m=0",
  "step:2,n",  # option without a value
  "step:2,n=x",
  "step:2,,n=2",
  "never,m=2",
]


@pytest.mark.parametrize("spec", ERRORS)
def test_bad_spec_is_a_policy_error(spec):
  with pytest.raises(PolicyError):
    parse_policy(spec)


def test_errors_name_the_spec_and_the_problem():
  with pytest.raises(PolicyError, match="'sometimes'.*never, always, step:K"):
    parse_policy("sometimes")
  with pytest.raises(PolicyError, match=r"'step:0'.*\[1, 2\^24\)"):
    parse_policy("step:0")
  with pytest.raises(PolicyError, match=r"random:P needs 0 <= P <= 1"):
    parse_policy("random:2")
  with pytest.raises(PolicyError, match=r"bad option 'q=1'; allowed: m, n"):
    parse_policy("step:2,q=1")
  with pytest.raises(PolicyError, match=r"allowed: budget, m"):
    parse_policy("entropy:1,n=2")
  assert issubclass(PolicyError, ValueError)


@pytest.mark.parametrize(
  "a,b", [("entropy:2.1234567", "entropy:2.1234599"), ("random:0.1234561", "random:0.1234564")]
)
def test_distinct_thresholds_have_distinct_canonical_specs(a, b):
  pa, pb = parse_policy(a), parse_policy(b)
  assert np.float32(pa.threshold) != np.float32(pb.threshold)  # really different policies, even on device
  assert pa.spec != pb.spec
  assert parse_policy(pa.spec) == pa


def test_window_semantics_step_and_hint():
  """The teacher writes step k iff step_lo <= k < step_hi: step:K,n=N covers K .. K+N-1."""

  def written(p):
    return [k for k in range(1, 12) if p.step_lo <= k < p.step_hi]

  assert written(parse_policy("step:3")) == [3]
  assert written(parse_policy("step:3,n=4")) == [3, 4, 5, 6]
  assert written(parse_policy("hint:5")) == [5]
  assert written(parse_policy("always")) == list(range(1, 12))
  assert written(parse_policy("never")) == []
  assert written(parse_policy("entropy:1")) == []  # triggers have no timing window


def test_policy_arrays_stack():
  specs = [
    "never",
    "always",
    "step:2,n=3",
    "hint:4,m=6",
    "entropy:2.5,budget=2",
    "maxprob:0.3,m=5",
    "margin:0.1",
    "random:0.25",
  ]
  pols = [parse_policy(s) for s in specs]
  arr = PolicyArrays.stack(pols)
  expected = {
    "step_lo": [0, 1, 2, 4, 0, 0, 0, 0],
    "step_hi": [0, NL, 5, 5, 0, 0, 0, 0],
    "trigger": [
      TRIGGER_NONE,
      TRIGGER_NONE,
      TRIGGER_NONE,
      TRIGGER_NONE,
      TRIGGER_ENTROPY,
      TRIGGER_MAXPROB,
      TRIGGER_MARGIN,
      TRIGGER_RANDOM,
    ],
    "budget": [NL, NL, NL, NL, 2, NL, NL, NL],
    "token_limit": [NL, NL, NL, 6, NL, 5, NL, NL],
  }
  for name, want in expected.items():
    got = np.asarray(getattr(arr, name))
    assert got.dtype == np.int32 and got.shape == (len(specs),), name
    np.testing.assert_array_equal(got, want, err_msg=name)
  thr = np.asarray(arr.threshold)
  assert thr.dtype == np.float32 and thr.shape == (len(specs),)
  np.testing.assert_array_equal(thr, np.asarray([0, 0, 0, 0, 2.5, 0.3, 0.1, 0.25], np.float32))
  assert {f.name for f in dataclasses.fields(PolicyArrays)} == set(expected) | {"threshold"}


def test_policy_arrays_stack_hand_built_policy_and_order():
  custom = Policy(
    "custom", step_lo=7, step_hi=9, trigger=TRIGGER_MARGIN, threshold=0.75, budget=4, token_limit=3
  )
  arr = PolicyArrays.stack([parse_policy("never"), custom, parse_policy("never")])
  assert np.asarray(arr.step_lo).tolist() == [0, 7, 0]
  assert np.asarray(arr.step_hi).tolist() == [0, 9, 0]
  assert np.asarray(arr.trigger).tolist() == [TRIGGER_NONE, TRIGGER_MARGIN, TRIGGER_NONE]
  assert np.asarray(arr.threshold).tolist() == [0.0, 0.75, 0.0]
  assert np.asarray(arr.budget).tolist() == [NL, 4, NL]
  assert np.asarray(arr.token_limit).tolist() == [NL, 3, NL]
  assert custom.needs_teacher
  assert not Policy("empty window", step_lo=4, step_hi=4).needs_teacher

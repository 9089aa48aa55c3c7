"""analysis's policy reading (policies.py): the step K a policy intervenes at, malformed policies
named as such, and the reading order of policies in every table."""

from __future__ import annotations

import re

import pandas as pd
import pytest
from analysis_rows import row

from experiments.report import analysis


@pytest.mark.parametrize(
  "policy,k",
  [
    ("step:1", 1),
    ("step:3", 3),
    ("step:2,n=1", 2),
    (" STEP:4 ", 4),  # parse_policy's spelling rules
    ("step:2,n=3", None),  # several steps
    ("step:2,m=3", None),  # part of step 2: the same policy as hint:2,m=3
    ("hint:1,m=3", None),
    ("hint:2", None),
    ("never", None),
    ("always", None),
    ("entropy:0.5", None),
    ("random:0.2,budget=1", None),
  ],
)
def test_intervention_step(policy: str, k: int | None) -> None:
  assert analysis.intervention_step(policy) == k


@pytest.mark.parametrize(
  "policy", ["step:", "step:x", "step:0", "step:1,n=two", "step:4,budget=2", "entropy:abc", "bogus", ""]
)
def test_malformed_policy_is_an_error_naming_it(policy: str) -> None:
  # decode.core.policy.parse_policy is the one grammar: whatever it rejects, the report rejects.
  for parse in (analysis.intervention_step, analysis.policy_sort_key):
    with pytest.raises(ValueError, match=re.escape(f"malformed policy {policy!r} in the results")):
      parse(policy)


def test_summarize_names_a_malformed_policy() -> None:
  rows = [row("never", 0, True), row("step:two", 0, True, row_id="bad")]
  with pytest.raises(ValueError, match="malformed policy 'step:two'"):
    analysis.summarize(pd.DataFrame(rows), n_boot=10)


def test_policy_sort_order() -> None:
  policies = ["always", "step:10", "entropy:0.5", "step:2", "never", "step:1"]
  assert sorted(policies, key=analysis.policy_sort_key) == [
    "never",
    "step:1",
    "step:2",
    "step:10",
    "entropy:0.5",
    "always",
  ]


def test_policy_sort_order_within_families() -> None:
  policies = [
    "random:0.2",
    "always",
    "step:2,m=3",
    "margin:1",
    "entropy:0.5",
    "step:2,n=3",
    "maxprob:0.3",
    "hint:1,m=3",
    "entropy:0.5,budget=2",
    "step:2",
    "entropy:0.25",
    "never",
  ]
  assert sorted(policies, key=analysis.policy_sort_key) == [
    "never",
    "step:2",
    "step:2,n=3",
    "hint:1,m=3",
    "step:2,m=3",  # a hint: the teacher writes 3 tokens of step 2
    "entropy:0.25",
    "entropy:0.5,budget=2",
    "entropy:0.5",  # no budget: unlimited, after every budget
    "maxprob:0.3",
    "margin:1",
    "random:0.2",
    "always",
  ]

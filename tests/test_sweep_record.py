"""The sweep's side of the report's checks: what SweepRunner.record writes, and the exemplar config."""

from __future__ import annotations

import pandas as pd
import pytest

from configs.base import base_config
from decode.core.policy import parse_policy
from decode.host.results import RowResult
from experiments.report import analysis
from experiments.sweep.grid import ModelEntry, SweepRow
from experiments.sweep.runner import SweepRunner
from experiments.tasks.datasets import Problem
from experiments.tasks.prompts import build_prompt

EXEMPLARS = [
  Problem("toy/train/0", "Ava has 2 apples and buys 3. How many?", "5", "Ava has 2 + 3 = <<2+3=5>>5.", "toy"),
  Problem("toy/train/1", "Ben has 4 pears and buys 3. How many?", "7", "Ben has 4 + 3 = <<4+3=7>>7.", "toy"),
]
TEST = Problem(
  "toy/test/0", "Cara has 2 coins, doubles them, adds 3. How many?", "7", "2 * 2 = 4.\n\n4 + 3 = 7.", "toy"
)


def record(problem: Problem, prompt: str, completion: str, policy: str = "never") -> dict:
  row = SweepRow("toy", problem, prompt, ModelEntry("student", "unused"), "teacher", parse_policy(policy), 0)
  res = RowResult([], [], [], completion, policy, 0, 0, 0, 0, [], 2, "")
  runner = SweepRunner(decoder=None, store=None, settings=None, progress=False)  # record needs neither
  return runner.record(row, res, "plain")


def test_record_carries_gold_steps_and_exemplar_answers() -> None:
  rec = record(TEST, build_prompt(TEST, "cot", EXEMPLARS), "2 * 2 = 4.\n#### 5")
  assert rec["gold_steps"] == 2  # two non-empty solution lines
  assert rec["exemplar_answers"] == ["5", "7"]
  assert (rec["prediction"], rec["correct"]) == ("5", False)
  no_rationale = Problem("svamp/test/1", "q", "3", None, "svamp")
  bare = record(no_rationale, build_prompt(no_rationale, "cot", []), "#### 3")
  assert bare["gold_steps"] is None and bare["exemplar_answers"] == []


def test_recorded_fields_feed_the_report() -> None:
  prompt = build_prompt(TEST, "cot", EXEMPLARS)
  rows = [
    record(TEST, prompt, "#### 5"),  # copies exemplar answer 5
    record(TEST, prompt, "#### 7", policy="step:1"),  # right; 7 is also an exemplar answer
  ]
  s = analysis.summarize(pd.DataFrame(rows), n_boot=20)
  never = s[s.policy == "never"].iloc[0]
  step1 = s[s.policy == "step:1"].iloc[0]
  assert never.exemplar_copy_rate == 1.0 and never.gold_exemplar_rate == 1.0
  assert step1.n_no_leak == 1 and step1.gain_no_leak_points == pytest.approx(100.0)  # 2 gold steps > 1


def test_distinct_answer_exemplars_are_on_by_default() -> None:
  assert base_config().exemplars.distinct_answers is True

"""Calibrated triggers (`entropy:q=R`) and matched random controls, against hand-worked values."""

import dataclasses

import jax.numpy as jnp
import numpy as np
import pytest
from ml_collections import ConfigDict

from decode.api import DecodeRequest
from decode.core.policy import TRIGGER_ENTROPY, TRIGGER_MARGIN, TRIGGER_MAXPROB, parse_policy
from decode.errors import PolicyError
from decode.host.guided import GuidedDecoder
from experiments.sweep.calibration import calibrate, matched_control, realized_rate, threshold_for_rate
from model.lm import forward

VALUES = [0.9, 0.1, 2.0, 0.5, 1.3]  # sorted: 0.1 0.5 0.9 1.3 2.0


@pytest.mark.parametrize(
  "trigger,rate,threshold,fires",
  [
    (TRIGGER_ENTROPY, 0.4, 0.9, {1.3, 2.0}),  # entropy fires above: the 2 (= 0.4 * 5) largest
    (TRIGGER_MAXPROB, 0.4, 0.9, {0.1, 0.5}),  # max prob fires below: the 2 smallest
    (TRIGGER_MARGIN, 0.2, 0.5, {0.1}),
    (TRIGGER_ENTROPY, 0.05, 2.0, set()),  # round(0.25) = 0 step starts
    (TRIGGER_ENTROPY, 0.95, float("-inf"), set(VALUES)),  # round(4.75) = 5: all
    (TRIGGER_MAXPROB, 0.95, float("inf"), set(VALUES)),
  ],
)
def test_threshold_fires_at_the_asked_rate(trigger, rate, threshold, fires):
  got = threshold_for_rate(trigger == TRIGGER_ENTROPY, rate, VALUES + [float("nan")])  # NaN: ignored
  assert got == threshold
  fired = {v for v in VALUES if (v > got if trigger == TRIGGER_ENTROPY else v < got)}
  assert fired == fires


def test_threshold_of_one_value_and_of_none():
  # One recorded value: round(0.4 * 1) = 0 fire, so entropy's threshold is the value itself.
  assert threshold_for_rate(True, 0.4, [1.5]) == 1.5 and threshold_for_rate(False, 0.4, [1.5]) == 1.5
  for values in ([], [float("nan")]):
    with pytest.raises(ValueError, match="^no recorded step-start uncertainties to calibrate from$"):
      threshold_for_rate(True, 0.3, values)
  # A q= trigger without never rows that record them says what to add, by name.
  never = [{"step_uncertainty": []}, {}]
  with pytest.raises(PolicyError) as e:
    calibrate(parse_policy("entropy:q=0.3"), never)
  assert str(e.value) == (
    "policy 'entropy:q=0.3' needs recorded step-start uncertainties from `never` rows of the same student; "
    "add 'never' to the sweep's policies (results written before this feature lack them)"
  )
  # Each trigger reads its own column: entropy [0], max prob [1], margin [2].
  never = [{"step_uncertainty": [[0.1, 0.9, 0.5], [2.0, 0.2, 0.05]]}]
  assert calibrate(parse_policy("entropy:q=0.5"), never).threshold == 0.1
  assert calibrate(parse_policy("maxprob:q=0.5"), never).threshold == 0.9
  assert calibrate(parse_policy("margin:q=0.5"), never).threshold == 0.5


def test_realized_rate_pools_rows():
  recs = [
    {"step_ids": [1, 1, 2, 2, 3], "intervention_steps": [2]},  # 3 step starts, 1 by the teacher
    {"step_ids": [1, 2], "intervention_steps": [1, 2]},  # 2 step starts, both
    {"step_ids": [], "intervention_steps": []},
  ]
  assert realized_rate(recs) == pytest.approx(3 / 5)
  # Up to the answer: a row that completed its answer in step 2 and then began a "Question:" step 3
  # (written by the teacher) has 2 step starts, 1 by the teacher; NaN (a table's missing value) = none.
  stopped = {"step_ids": [1, 2, 2, 3], "intervention_steps": [1, 3], "answer_step": 2}
  assert realized_rate([stopped]) == pytest.approx(1 / 2)
  assert realized_rate([{**stopped, "answer_step": float("nan")}]) == pytest.approx(2 / 3)
  assert np.isnan(realized_rate([{**stopped, "answer_step": 0}]))  # no step starts up to it
  assert realized_rate([{"step_ids": [], "intervention_steps": []}]) != realized_rate([])  # both NaN
  assert matched_control(parse_policy("entropy:q=0.3"), 3 / 7).spec == "random:0.4286"
  # A control differs from its trigger only in when the teacher steps in: the same budget and m.
  control = matched_control(parse_policy("margin:q=0.2,budget=2,m=8"), 0.25)
  assert (control.spec, control.budget, control.token_limit) == ("random:0.25,budget=2,m=8", 2, 8)


def test_rate_specs_parse_and_refuse_to_run_uncalibrated(pair):
  p = parse_policy("Entropy:q=0.30,budget=2")
  assert (p.spec, p.rate, p.budget, p.needs_calibration) == ("entropy:q=0.3,budget=2", 0.3, 2, True)
  assert not p.calibrated(1.5).needs_calibration and p.calibrated(1.5).spec == p.spec
  for bad in ("entropy:q=0", "maxprob:q=1", "margin:q=1.5"):
    with pytest.raises(PolicyError, match="q "):
      parse_policy(bad)
  s, t = pair
  g = GuidedDecoder(s, t, step_delimiter="e")
  with pytest.raises(PolicyError, match="calibrate"):
    g.generate(DecodeRequest(g.encode(["ab"]), "entropy:q=0.3", max_new_tokens=4))


def _metrics(logits):
  x = np.asarray(logits, np.float64)
  p = np.exp(x - x.max())
  p /= p.sum()
  top = np.sort(p)[::-1]
  return [float(-(p[p > 0] * np.log(p[p > 0])).sum()), float(top[0]), float(top[0] - top[1])]


def test_student_only_rows_record_step_start_uncertainty(pair):
  """Each step start's [entropy, max prob, margin] equals a plain forward's distribution there."""
  s, t = pair
  g = GuidedDecoder(s, t, step_delimiter="e")
  ids = g.encode(["what is 3+4?", "hello there. x", "ab", "qq"])
  checked = 0
  for prompt, r in zip(ids, g.generate(DecodeRequest(ids, "never", max_new_tokens=32))):
    starts = [j for j in range(len(r.token_ids)) if j == 0 or r.step_ids[j] != r.step_ids[j - 1]]
    assert len(r.step_uncertainty) == len(starts) >= 1
    for j, got in zip(starts, r.step_uncertainty):
      seq = jnp.asarray([prompt + r.token_ids[:j]])
      n = seq.shape[1]
      logits, _ = forward(
        s.cfg, s.params, seq, jnp.zeros((1,), jnp.int32), jnp.full((1,), n), s.init_cache(1, n)
      )
      np.testing.assert_allclose(got, _metrics(logits[0, -1, : len(s.tokenizer)]), atol=2e-4, rtol=1e-4)
      checked += 1
  assert checked >= 5  # several step starts, not just each row's first


def test_sweep_calibrates_and_adds_the_matched_control(pair_dir, tmp_path):
  from configs.base import base_config
  from experiments.sweep.run import run_sweep
  from experiments.sweep.store import ResultsStore

  c = base_config()
  c.output_dir = str(tmp_path / "out")
  c.task.num_problems = 6
  c.students = [ConfigDict(dict(name="s", path=str(pair_dir / "s"), checkpoint=None))]
  c.teacher = ConfigDict(dict(name="t", path=str(pair_dir / "t")))
  c.policies = ("never", "step:1", "entropy:q=0.3")
  c.matched_random = True
  c.batch_size, c.max_new_tokens, c.step_delimiter = 4, 20, "e"
  run_sweep(c, progress=False)
  rows = list(ResultsStore(tmp_path / "out" / "results.jsonl").rows.values())
  never = {r["problem_id"]: r for r in rows if r["policy"] == "never"}
  trig = [r for r in rows if r["policy"] == "entropy:q=0.3"]
  want = threshold_for_rate(True, 0.3, [m[0] for r in never.values() for m in r["step_uncertainty"]])
  assert len(trig) == 6 and all(r["threshold"] == pytest.approx(want) for r in trig)
  for r in trig:  # step 1 starts from the same prompt as the student-only run: the same decision
    fired = never[r["problem_id"]]["step_uncertainty"][0][0] > want
    assert (1 in r["intervention_steps"]) == fired
  control = [r for r in rows if r["policy"].startswith("random:")]
  assert len(control) == 6 and {r["matched_to"] for r in control} == {"entropy:q=0.3"}
  assert control[0]["policy"] == matched_control(parse_policy("entropy:q=0.3"), realized_rate(trig)).spec
  assert all(r["row_id"].split("|")[4] == f"{r['policy']}@entropy:q=0.3" for r in control)
  import pandas as pd  # the report reads it all back: rates, no-leak columns, the controls section

  summary = pd.read_csv(tmp_path / "out" / "summary.csv").set_index("policy")
  assert summary.loc["entropy:q=0.3", "realized_rate"] == pytest.approx(realized_rate(trig))
  assert "gain_no_leak_points" in summary.columns and "step:1" in summary.index
  report = (tmp_path / "out" / "report.md").read_text()
  assert "## Matched-rate controls" in report and "## Timing without leakage" in report
  assert f"`{control[0]['policy']}`" in report.split("## Matched-rate controls")[1]


def test_matched_controls_table_against_hand_worked_rows():
  """Trigger vs its matched random on 4 problems: trigger right on 3, control on 1 -> +50 points."""
  import pandas as pd

  from experiments.report.analysis import prepare
  from experiments.report.controls import matched_controls
  from experiments.report.summary import summarize

  def row(policy, pid, correct, steps, teacher_steps, matched_to=None):
    return dict(
      task="t",
      student="s",
      policy=policy,
      problem_id=pid,
      answer="1",
      correct=correct,
      seed=0,
      step_ids=steps,
      intervention_steps=teacher_steps,
      matched_to=matched_to,
    )

  rows = []
  for i, (t_ok, c_ok) in enumerate([(True, False), (True, True), (True, False), (False, False)]):
    rows.append(row("never", f"p{i}", False, [1, 2], []))
    rows.append(row("entropy:q=0.5", f"p{i}", t_ok, [1, 2], [2]))  # 1 of 2 step starts: rate 0.5
    rows.append(row("random:0.5", f"p{i}", c_ok, [1, 2, 3, 4], [1, 3], "entropy:q=0.5"))
  df = pd.DataFrame(rows)
  (got,) = matched_controls(prepare(df), n_boot=200).itertuples()
  assert (got.trigger, got.control, got.n) == ("entropy:q=0.5", "random:0.5", 4)
  assert got.trigger_rate == 0.5 and got.control_rate == 0.5
  assert (got.trigger_accuracy, got.control_accuracy, got.diff_points) == (0.75, 0.25, 50.0)
  assert got.diff_ci_low <= 50.0 <= got.diff_ci_high
  summary = summarize(df, n_boot=50).set_index("policy")
  assert summary.loc["entropy:q=0.5", "realized_rate"] == 0.5 and summary.loc["never", "realized_rate"] == 0.0


def test_a_matched_control_never_shares_a_row_id_with_a_listed_policy():
  """A control whose spec equals a listed policy (random:0.25 listed, and some trigger's realized
  rate is 0.25) is its own row: it was silently skipped as already done when ids collided."""
  from experiments.sweep.grid import ModelEntry, expand_grid
  from experiments.tasks.datasets import Problem

  prob = Problem(problem_id="p1", question="q", answer="1", rationale=None, source="test")
  (listed,) = expand_grid(
    "t", [prob], {"p1": "q"}, [ModelEntry("s", "d")], "T", [parse_policy("random:0.25")], [0]
  )
  control = dataclasses.replace(listed, matched_to="entropy:q=0.3")
  other = dataclasses.replace(listed, matched_to="margin:q=0.3")
  assert len({listed.row_id, control.row_id, other.row_id}) == 3

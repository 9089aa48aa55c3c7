"""Sweeps that grow with the research (issue 22): more problems, a policy, a seed, fewer of them.

Rows already in the results keep their bytes and are never decoded again, new rows are decoded, rows
a later config no longer lists stay in the results and out of the report; content settings are
still refused. README.md "Growing a sweep" names these tests.
"""

import json
import subprocess

import pandas as pd
import pytest
from sweep_configs import rows_of, sweep_argv, tiny_sweep_config, write_config_file
from test_integrity import one_clear_line

from experiments.sweep import extent, manifest
from experiments.sweep.run import run_sweep
from experiments.sweep.runner import SweepRunner

POLICIES = ("never", "step:1", "step:2")
KEYS = ("token_ids", "authors", "step_ids", "completion", "correct", "intervention_steps", "mode")


def grow(pair_dir, out, *flags):
  """The sweep CLI on the 8-problem task with POLICIES; returns (result, results bytes, rows)."""
  cfg_file = out.parent / "grow_cfg.py"
  write_config_file(cfg_file, pair_dir, POLICIES, num_problems=8, batch_size=4, max_new_tokens=10)
  r = subprocess.run(sweep_argv(cfg_file, out, *flags), capture_output=True, text=True)
  data = (out / "results.jsonl").read_bytes() if (out / "results.jsonl").exists() else b""
  return r, data, rows_of(out) if data else {}


def test_a_sweep_grows_by_problems_a_policy_and_a_seed(pair_dir, tmp_path):
  """The CLI's first run and its summary line, then growth in process (the same run_sweep the CLI
  calls; a subprocess per step would mostly time jax's start)."""
  out = tmp_path / "out"
  r, before, old_rows = grow(pair_dir, out, "--config.limit=4")  # 4 problems x 3 policies
  assert r.returncode == 0, r.stderr[-3000:]
  assert "decoded 12 new rows, kept 0 " in r.stdout, r.stdout
  four = ("never", "step:1", "step:2", "step:3")
  steps = [
    (dict(policies=POLICIES), 4 * 3, 4 * 3),  # 8 problems (the task's all): the 4 new problems' rows
    (dict(policies=four), 8, 24),  # a third timing policy
    (dict(policies=four, seeds=(0, 1)), 32, 32),  # a second seed
  ]
  for kw, decoded, kept in steps:
    stats = run_sweep(
      tiny_sweep_config(pair_dir, out, num_problems=8, batch_size=4, max_new_tokens=10, **kw), False
    )
    data, rows = (out / "results.jsonl").read_bytes(), rows_of(out)
    assert (stats["decoded"], stats["kept"]) == (decoded, kept)
    assert data.startswith(before)  # the earlier rows, byte for byte, first
    assert rows.keys() >= old_rows.keys() and len(rows) == len(old_rows) + decoded  # rows_of: none twice
    before, old_rows = data, rows
  m = json.loads((out / manifest.MANIFEST).read_text())
  assert [run["decoded"] for run in m["runs"]] == [12, 12, 8, 32]
  assert m["held"] == {k: v for k, v in m["extent"].items() if k != "problem_ids"}
  assert m["extent"]["seeds"] == [0, 1] and m["extent"]["problems"] == 8
  # A grown dir holds what one run of the final config writes: growing changes no row.
  ref = tmp_path / "ref"
  final = dict(policies=("never", "step:1", "step:2", "step:3"), seeds=(0, 1))
  run_sweep(tiny_sweep_config(pair_dir, ref, num_problems=8, batch_size=4, max_new_tokens=10, **final), False)
  want = rows_of(ref)
  assert want.keys() == old_rows.keys()
  for rid, row in want.items():
    assert {k: old_rows[rid][k] for k in KEYS} == {k: row[k] for k in KEYS}, rid
  # What a row IS may not change: the existing one-line error, nothing written.
  r, data, _ = grow(pair_dir, out, "--config.max_new_tokens=12")
  one_clear_line(
    r, "holds a different sweep; these settings differ (before -> now): max_new_tokens: 10 -> 12"
  )
  assert data == before


def test_rows_a_config_no_longer_lists_stay_but_leave_the_report(pair_dir, tmp_path):
  out = tmp_path / "out"
  kw = dict(num_problems=6, batch_size=4, max_new_tokens=10)
  run_sweep(tiny_sweep_config(pair_dir, out, POLICIES, **kw), progress=False)
  data = (out / "results.jsonl").read_bytes()
  stats = run_sweep(tiny_sweep_config(pair_dir, out, ("never", "step:2"), limit=3, **kw), progress=False)
  assert (stats["decoded"], stats["kept"], stats["loop_calls"]) == (0, 6, 0)
  assert stats["outside"] == 18 - 6 and (out / "results.jsonl").read_bytes() == data
  summary = pd.read_csv(out / "summary.csv")
  assert set(summary.policy) == {"never", "step:2"} and set(summary.n) == {3}  # what this config lists
  ext = extent.report_extent(out)
  assert ext["problems"] == 3 and ext["policies"] == ["never", "step:2"]
  assert len(extent.listed(rows_of(out).values(), ext)) == 6
  m = json.loads((out / manifest.MANIFEST).read_text())
  assert m["held"]["problems"] == 6 and m["held"]["policies"] == list(POLICIES)
  from experiments.report.writer import main as report_main  # the report CLI: the same choice, and its switch

  report_main([str(out)])
  assert set(pd.read_csv(out / "summary.csv").policy) == {"never", "step:2"}
  report_main([str(out), "--all-rows"])
  assert set(pd.read_csv(out / "summary.csv").policy) == set(POLICIES)
  cfg = tiny_sweep_config(pair_dir, out, ("never", "step:2"), limit=3, report_all_rows=True, **kw)
  assert run_sweep(cfg, progress=False)["outside"] == 0
  summary = pd.read_csv(out / "summary.csv")
  assert set(summary.policy) == set(POLICIES) and set(summary.n) == {6}  # the switch: every row
  assert extent.report_extent(out) is None and extent.report_extent(out, all_rows=False) == ext


def test_which_rows_an_extent_lists():
  e = extent.extent_of(
    ["p/0", "p/1"], [("s", None), ("s", "step_10")], ["never", "entropy:q=0.3"], (0,), True
  )
  row = dict(problem_id="p/0", student="s", checkpoint=None, seed=0, policy="never", matched_to=None)
  assert extent.in_extent(row, e)
  assert extent.in_extent({**row, "checkpoint": "", "matched_to": float("nan")}, e)  # as frames write none
  for other in (dict(problem_id="p/2"), dict(seed=1), dict(policy="step:1"), dict(checkpoint="step_20")):
    assert not extent.in_extent({**row, **other}, e), other
  control = {**row, "policy": "random:0.25", "matched_to": "entropy:q=0.3"}
  assert extent.in_extent(control, e) and not extent.in_extent(control, {**e, "matched_random": False})
  assert not extent.in_extent({**control, "matched_to": "margin:q=0.3"}, e)
  more = extent.extent_of(["p/0", "p/1", "p/2"], [("s", "step_20")], ["step:1"], (1,), False)
  assert extent.union(extent.summary(e), more) == {
    "problems": 3,
    "students": [{"name": "s", "checkpoint": c} for c in (None, "step_10", "step_20")],
    "policies": ["entropy:q=0.3", "never", "step:1"],
    "seeds": [0, 1],
    "matched_random": True,
  }
  assert extent.union({**extent.summary(e), "problems": extent.ALL}, more)["problems"] is extent.ALL


class Spy:
  """Records the policies and problems of every generate call and counts prefills."""

  def __init__(self, monkeypatch):
    self.generated, self.prefills = [], 0
    generate, prefill = SweepRunner._generate, SweepRunner._prefill

    def spy_generate(runner, rows, policies=None, **kw):
      specs = [p.spec for p in policies] if policies else [r.policy.spec for r in rows]
      self.generated += [(s, r.problem.problem_id, r.seed) for s, r in zip(specs, rows)]
      return generate(runner, rows, policies, **kw)

    def spy_prefill(runner, rows, prefixes):
      self.prefills += 1
      return prefill(runner, rows, prefixes)

    monkeypatch.setattr(SweepRunner, "_generate", spy_generate)
    monkeypatch.setattr(SweepRunner, "_prefill", spy_prefill)


def test_new_timings_fork_from_the_base_runs_in_the_results(pair_dir, tmp_path, monkeypatch):
  """A new step:K on old problems starts from their `never` rows already in the results (prefilled
  again, not decoded again); a new problem's base run is decoded once for all its policies."""
  out = tmp_path / "out"
  kw = dict(num_problems=4, batch_size=4, max_new_tokens=30)
  policies = ("never", "step:3", "step:2")
  run_sweep(tiny_sweep_config(pair_dir, out, policies[:2], **kw), progress=False)
  spy = Spy(monkeypatch)
  run_sweep(tiny_sweep_config(pair_dir, out, policies, **kw), progress=False)
  rows = rows_of(out)
  modes = [r["mode"] for r in rows.values() if r["policy"] == "step:2"]
  assert set(modes) <= {"fork", "copied"} and "fork" in modes  # forked, or its base run copied
  assert {s for s, _, _ in spy.generated} == {"step:2"} and spy.prefills == 1  # no student-only run again
  spy.generated, spy.prefills = [], 0
  kw["num_problems"] = 6
  stats = run_sweep(tiny_sweep_config(pair_dir, out, policies, **kw), progress=False)
  assert stats["decoded"] == 2 * 3
  never = [(pid, seed) for s, pid, seed in spy.generated if s == "never"]
  assert sorted(never) == [("synthetic/test/4", 0), ("synthetic/test/5", 0)]  # once each, for all policies
  assert {pid for _, pid, _ in spy.generated} == {"synthetic/test/4", "synthetic/test/5"}


# --------------------------------------------------------------------------- few-shot exemplars


def _line(q, ans):
  return json.dumps({"question": q, "answer": f"{q} = <<{ans}>>{ans}\n#### {ans}"})


def few_shot_files(tmp_path, pool):
  """test.jsonl with 3 problems (the third's question is also in the train pool: 'dup') and
  train.jsonl with the `pool` questions (of 'a', 'dup', 'b')."""
  answers = {"a": 5, "dup": 24, "b": 6}
  questions = {"a": "tom has 3 apples and buys 2. how many?", "dup": "a box has 4 rows of 6. how many?"}
  questions["b"] = "sue had 10 pens and lost 4. how many?"
  test = tmp_path / "test.jsonl"
  test.write_text(
    "\n".join(
      [_line("ann has 7 cats and 1 more. how many?", 8), _line("bob has 9 and gives 3. how many?", 6)]
    )
    + "\n"
    + _line(questions["dup"], 24)
    + "\n"
  )
  train = tmp_path / "train.jsonl"
  train.write_text("".join(_line(questions[k], answers[k]) + "\n" for k in pool))
  return train, test


def few_shot_config(pair_dir, out, train, test, **overrides):
  from ml_collections import ConfigDict

  c = tiny_sweep_config(pair_dir, out, ("never", "step:1"), num_problems=-1, batch_size=4, max_new_tokens=8)
  c.task = ConfigDict(dict(name="gsm8k", path=str(test), num_problems=-1))
  c.exemplars = ConfigDict(dict(path=str(train), task="gsm8k", k=2, seed=0))
  for k, v in overrides.items():
    c[k] = v
  return c


def test_exemplars_are_chosen_once_leaving_out_every_problem_of_the_task(pair_dir, tmp_path):
  train, test = few_shot_files(tmp_path, ["a", "dup", "b"])
  out = tmp_path / "out"
  run_sweep(few_shot_config(pair_dir, out, train, test, limit=2), progress=False)
  m = json.loads((out / manifest.MANIFEST).read_text())
  assert sorted(m["content"]["exemplars"]["chosen"]) == ["gsm8k/train/0", "gsm8k/train/2"]  # never dup
  stats = run_sweep(few_shot_config(pair_dir, out, train, test), progress=False)  # the 3rd problem joins
  assert stats["decoded"] == 2
  assert {tuple(sorted(r["exemplar_answers"])) for r in rows_of(out).values()} == {("5", "6")}


def test_a_format_1_dirs_exemplars_are_chosen_as_it_chose_them(pair_dir, tmp_path):
  """Before this change exemplars left out only the evaluated problems: a dir written then keeps
  its choice, and a grown problem that is one of its exemplars is refused."""
  from experiments.sweep.config import SweepConfigError, parse_config
  from experiments.sweep.problems import check_not_exemplars, choose_exemplars, load_problems

  train, test = few_shot_files(tmp_path, ["a", "dup"])
  cfg = parse_config(few_shot_config(pair_dir, tmp_path / "out", train, test))
  source = load_problems(cfg.task)
  old = {"content": {"exemplars": {"k": 2}}, "extent": {"problems": 2}}  # as _migrate_v1 reads one
  chosen = choose_exemplars(cfg, source, old)
  assert sorted(p.problem_id for p in chosen) == ["gsm8k/train/0", "gsm8k/train/1"]  # dup was allowed then
  with pytest.raises(SweepConfigError, match=r"\['gsm8k/test/2'\] are among this sweep's few-shot exemplars"):
    check_not_exemplars(source, choose_exemplars(cfg, source, old))
  recorded = {"content": {"exemplars": {"chosen": ["gsm8k/train/1", "gsm8k/train/0"]}}}
  assert [p.problem_id for p in choose_exemplars(cfg, source, recorded)] == [
    "gsm8k/train/1",
    "gsm8k/train/0",
  ]

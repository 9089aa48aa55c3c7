"""Sweeps: grid expansion, fork == plain, kill-and-resume, config overrides, bad configs."""

import json
import signal
import subprocess
import time

import jax
import pytest
from ml_collections import ConfigDict
from sweep_configs import rows_of, sweep_argv, tiny_sweep_config, write_config_file

from decode.core.policy import parse_policy
from experiments.sweep.grid import ModelEntry, expand_grid
from experiments.sweep.run import run_sweep
from experiments.tasks.datasets import Problem

POLICIES = ("never", "always", "step:1", "step:2", "step:3", "step:2,n=2", "hint:1,m=2", "entropy:2.0")


def sweep_config(pair_dir, out, **overrides) -> ConfigDict:
  kw = dict(num_problems=6, batch_size=4, max_new_tokens=20)
  kw.update(overrides)
  return tiny_sweep_config(pair_dir, out, kw.pop("policies", POLICIES), **kw)


KEYS = (
  "token_ids",
  "authors",
  "step_ids",
  "completion",
  "correct",
  "student_tokens",
  "teacher_tokens",
  "switches",
  "intervention_steps",
)


def test_grid_expansion():
  probs = [Problem(f"p/{i}", f"q{i}", "1", None, "x") for i in range(3)]
  pols = [parse_policy(p) for p in ["never", "step:1", "step:1", "always"]]
  rows = expand_grid(
    "t",
    probs,
    {p.problem_id: p.question for p in probs},
    [ModelEntry("a", "/a"), ModelEntry("a", "/a2", "ck1")],
    "T",
    pols,
    [0, 1],
  )
  assert len(rows) == 2 * 2 * 3 * 3  # duplicate policy collapses
  assert len({r.row_id for r in rows}) == len(rows)
  assert rows[0].row_seed == rows[3].row_seed  # same problem and seed -> same randomness across policies
  forkable = lambda spec: parse_policy(spec).forkable
  assert forkable("step:3") and forkable("never")
  assert not forkable("always") and not forkable("step:1")  # empty prefix: plain
  assert not forkable("entropy:1") and not forkable("random:0.5")


class Bar:
  """The runner's progress bar, recorded: its total is set once, when the bar is made."""

  made: list = []

  def __init__(self, total, **kw):
    self.total, self.n = total, 0
    Bar.made.append(self)

  def update(self, n):
    self.n += n

  def close(self):
    pass


def test_fork_mode_equals_plain_mode(pair_dir, tmp_path, monkeypatch):
  from experiments.sweep import runner

  monkeypatch.setattr(runner, "tqdm", Bar)
  Bar.made = []
  jax.clear_caches()  # count this test's compilations from a cold start
  fork = run_sweep(sweep_config(pair_dir, tmp_path / "fork", fork=True), progress=False)
  bars, Bar.made = Bar.made, []
  plain = run_sweep(sweep_config(pair_dir, tmp_path / "plain", fork=False), progress=False)
  # The bar's total, fixed from the start (the plan's calls), is where it ends: no batch goes uncounted.
  assert [b.n for b in bars] == [b.total for b in bars] and fork["loop_calls"] <= sum(b.total for b in bars)
  assert [b.n for b in Bar.made] == [b.total for b in Bar.made] == [plain["loop_calls"]]
  a, b = rows_of(tmp_path / "fork"), rows_of(tmp_path / "plain")
  assert a.keys() == b.keys() and len(a) == 6 * len(POLICIES)
  for rid in a:
    assert {k: a[rid][k] for k in KEYS} == {k: b[rid][k] for k in KEYS}, rid
  assert any(r["mode"] == "fork" for r in a.values())
  # Fork rows start from prefilled caches: the teacher reads nothing but its own step's positions,
  # where a plain row's teacher first catches up on the prompt and the student's prefix.
  forked = [rid for rid in a if a[rid]["mode"] == "fork"]
  assert forked and all(a[rid]["teacher_prefilled"] == a[rid]["teacher_tokens"] for rid in forked)
  assert all(b[rid]["teacher_prefilled"] > b[rid]["teacher_tokens"] for rid in forked)
  assert fork["compiles"] == 1  # the whole fork-mode grid, prefills included: one compilation
  assert plain["compiles"] == 0  # same models and shapes: the plain run reuses the compiled loop
  assert (tmp_path / "fork" / "summary.csv").exists() and (tmp_path / "fork" / "report.md").exists()


def test_fork_mode_equals_plain_mode_when_sampling(pair_dir, tmp_path):
  kw = dict(temperature=1.0, top_p=0.9, seeds=(0, 1), policies=("never", "step:1", "step:2", "step:3"))
  run_sweep(sweep_config(pair_dir, tmp_path / "fork", fork=True, **kw), progress=False)
  # the plain run also turns teacher sub-batches off: neither fork mode nor sub-batches change a row
  run_sweep(
    sweep_config(pair_dir, tmp_path / "plain", fork=False, teacher_sub_batches=0, **kw), progress=False
  )
  a, b = rows_of(tmp_path / "fork"), rows_of(tmp_path / "plain")
  assert a.keys() == b.keys()
  for rid in a:
    assert {k: a[rid][k] for k in KEYS} == {k: b[rid][k] for k in KEYS}, rid


def _cli(pair_dir, out, *extra):
  cfg_file = out.parent / "sweep_cfg.py"
  write_config_file(cfg_file, pair_dir, POLICIES, num_problems=6, batch_size=2, max_new_tokens=20)
  return sweep_argv(cfg_file, out, *extra)


def test_killed_sweep_resumes_without_loss_or_duplicates(pair_dir, tmp_path):
  ref = tmp_path / "ref"
  subprocess.run(_cli(pair_dir, ref), check=True, capture_output=True)
  out = tmp_path / "killed"
  proc = subprocess.Popen(_cli(pair_dir, out), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
  results = out / "results.jsonl"
  deadline = time.time() + 240
  while time.time() < deadline and proc.poll() is None:
    if results.exists() and results.read_text().count("\n") >= 6:
      break
    time.sleep(0.05)
  proc.send_signal(signal.SIGKILL)
  proc.wait()
  partial = results.read_text().count("\n")
  assert 0 < partial < len(rows_of(ref)), "the kill should land mid-sweep"
  with results.open("a") as f:  # as if killed in the middle of a write
    f.write('{"row_id": "half a li')
  r = subprocess.run(_cli(pair_dir, out), capture_output=True, text=True)  # the OS freed the kill's lock
  assert r.returncode == 0, r.stderr[-2000:]
  a, b = rows_of(ref), rows_of(out)
  assert a.keys() == b.keys()
  for rid in a:  # run after run, killed or not: the same rows, every field
    assert a[rid] == b[rid], rid


def test_limit_and_output_dir_overrides(pair_dir, tmp_path):
  out = tmp_path / "lim"
  r = subprocess.run(_cli(pair_dir, out, "--config.limit=2"), capture_output=True, text=True)
  assert r.returncode == 0, r.stderr[-2000:]
  rows = rows_of(out)
  assert len({x["problem_id"] for x in rows.values()}) == 2 and len(rows) == 2 * len(POLICIES)
  assert "report.md" in r.stdout


@pytest.mark.parametrize(
  "override,message",
  [
    ("--config.policies=('never','sometimes')", "unknown policy"),
    ("--config.teacher.path=/nonexistent", "does not exist"),
    ("--config.mesh.data=3", "devices"),
    ("--config.teacher_sub_batches=-1", "teacher_sub_batches >= 0"),
  ],
)
def test_bad_config_is_a_clear_error_with_no_output(pair_dir, tmp_path, override, message):
  out = tmp_path / "bad"
  r = subprocess.run(_cli(pair_dir, out, override), capture_output=True, text=True)
  assert r.returncode == 2 and message in r.stderr and "Traceback" not in r.stderr, r.stderr[-2000:]
  assert not (out / "results.jsonl").exists()


def _gsm8k_files(tmp_path):
  """A GSM8K-format train split (exemplar pool) and test split written as jsonl."""

  def line(q, steps, ans):
    return json.dumps({"question": q, "answer": "\n".join(steps + [f"#### {ans}"])})

  train = tmp_path / "train.jsonl"
  train.write_text(
    "\n".join(
      [
        line("tom has 3 apples and buys 2 more. how many?", ["3 + 2 = <<3+2=5>>5"], 5),
        line("a box has 4 rows of 6 eggs. how many eggs?", ["4 * 6 = <<4*6=24>>24"], 24),
        line("sue had 10 pens and lost 4. how many left?", ["10 - 4 = <<10-4=6>>6"], 6),
      ]
    )
    + "\n"
  )
  test = tmp_path / "test.jsonl"
  test.write_text(
    "\n".join(
      [
        line("ann has 7 cats and gets 1 more. how many?", ["7 + 1 = <<7+1=8>>8"], 8),
        line("bob has 9 cards and gives away 3. how many?", ["9 - 3 = <<9-3=6>>6"], 6),
      ]
    )
    + "\n"
  )
  return train, test


def _few_shot_config(pair_dir, out, train, test, **overrides):
  cfg = sweep_config(pair_dir, out, **overrides)
  cfg.task = ConfigDict(dict(name="gsm8k", path=str(test), num_problems=-1))
  cfg.exemplars = ConfigDict(dict(path=str(train), task="gsm8k", k=2, seed=0))
  return cfg


@pytest.mark.parametrize("temperature", [0.0, 1.0], ids=["greedy", "sampled"])
def test_shared_prefix_rows_equal_rows_without_it(pair_dir, tmp_path, temperature):
  """2-shot prompts share most of their tokens: prefilled once, the rows (fork and plain) are unchanged."""
  train, test = _gsm8k_files(tmp_path)
  policies = ("never", "step:1", "step:2", "always", "entropy:1.0")
  runs = {}
  for name, shared, fork in (("off", False, True), ("fork", True, True), ("plain", True, False)):
    cfg = _few_shot_config(pair_dir, tmp_path / name, train, test, policies=policies, temperature=temperature)
    cfg.shared_prefix, cfg.fork = shared, fork
    run_sweep(cfg, progress=False)
    runs[name] = rows_of(tmp_path / name)
  for name in ("fork", "plain"):
    assert runs[name].keys() == runs["off"].keys()
    for rid, row in runs["off"].items():
      got = runs[name][rid]
      assert (got["token_ids"], got["authors"], got["completion"]) == (
        row["token_ids"],
        row["authors"],
        row["completion"],
      ), (name, rid)


def test_gsm8k_few_shot_sweep_from_local_files(pair_dir, tmp_path):
  """A real-format task end to end: GSM8K jsonl test + train files, 2-shot CoT, a policy grid."""
  train, test = _gsm8k_files(tmp_path)
  cfg = _few_shot_config(pair_dir, tmp_path / "out", train, test, policies=("never", "step:1", "always"))
  jax.clear_caches()
  stats = run_sweep(cfg, progress=False)
  rows = rows_of(tmp_path / "out")
  assert len(rows) == 2 * 3 and stats["compiles"] == 1
  assert {r["answer"] for r in rows.values()} == {"8", "6"}
  assert {r["problem_id"] for r in rows.values()} == {"gsm8k/test/0", "gsm8k/test/1"}
  for r in rows.values():  # the prediction is what the answer extractor reads off the completion
    from experiments.tasks.answers import extract_answer, strip_after_answer

    assert r["prediction"] == extract_answer(strip_after_answer(r["completion"]))
    assert r["correct"] == (r["prediction"] is not None and float(r["prediction"]) == float(r["answer"]))

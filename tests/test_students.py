"""Checkpoint-based students: a run's checkpoints expand to one student per step, loaded as saved."""

import json
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import optax
import orbax.checkpoint as ocp
import pytest
import tiny_models
from ml_collections import ConfigDict

from experiments.sweep.students import StudentConfigError, expand, load_student
from model.config import DecoderConfig
from model.hf_export import export_hf
from model.hf_import import load_model
from model.lm import forward, init_params

TOKENS = jnp.asarray([[1, 5, 9, 13, 4, 7], [1, 8, 8, 20, 11, 3]], jnp.int32)


def _cfg():
  return DecoderConfig(
    family="llama",
    vocab_size=tiny_models.VOCAB,
    hidden_size=32,
    intermediate_size=48,
    num_layers=2,
    num_heads=4,
    num_kv_heads=2,
    head_dim=8,
    max_position_embeddings=64,
  )


def _logits(lm):
  z = jnp.zeros((2,), jnp.int32)
  return np.asarray(forward(lm.cfg, lm.params, TOKENS, z, z + 6, lm.init_cache(2, 6))[0])


@pytest.fixture(scope="module")
def run(tmp_path_factory):
  """A training run as experiments.training.train leaves it: CheckpointManager steps + an HF export."""
  root = tmp_path_factory.mktemp("run")
  cfg = _cfg()
  tok_dir = root / "tok"
  tiny_models.make_tokenizer(tok_dir)
  opt = optax.adamw(1e-3)
  saved = {}
  options = ocp.CheckpointManagerOptions(enable_async_checkpointing=False)
  with ocp.CheckpointManager(root / "checkpoints", options=options) as mngr:
    for step in (10, 20, 30, 40):
      params = init_params(cfg, jax.random.key(step))  # a different model at every step
      mngr.save(
        step, args=ocp.args.StandardSave({"params": params, "opt_state": opt.init(params)}), force=True
      )
      saved[step] = params
    mngr.wait_until_finished()
  export_hf(root / "hf", cfg, saved[40], tokenizer=tok_dir)
  for step in (10, 20, 30, 40):  # the same run as Hugging Face checkpoint folders (OLMo / Pythia style)
    export_hf(root / "hf_ckpts" / f"step_{step}", cfg, saved[step], tokenizer=tok_dir)
  return root, saved


@pytest.mark.parametrize(
  "steps,want",
  [("all", [10, 20, 30, 40]), ("every:3", [10, 40]), ([20, 40], [20, 40]), ("every:2", [10, 30, 40])],
)
def test_orbax_run_expands_one_student_per_selected_step(run, steps, want):
  root, _ = run
  entries = expand(
    ConfigDict(dict(name="s", checkpoints=str(root / "checkpoints"), path=str(root / "hf"), steps=steps))
  )
  assert [e.checkpoint for e in entries] == [f"step_{s}" for s in want]
  assert {e.name for e in entries} == {"s"} and {e.source for e in entries} == {"orbax"}


def test_orbax_step_loads_the_params_saved_at_that_step(run):
  """Restored straight from the checkpoint == that step exported to HF and loaded the usual way."""
  root, saved = run
  (entry,) = expand(
    ConfigDict(dict(name="s", checkpoints=str(root / "checkpoints"), path=str(root / "hf"), steps=[20]))
  )
  lm = load_student(entry, dtype="float32")
  for a, b in zip(jax.tree.leaves(lm.params), jax.tree.leaves(saved[20])):
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
  np.testing.assert_allclose(_logits(lm), _logits(load_model(root / "hf_ckpts" / "step_20")), atol=1e-6)
  assert lm.tokenizer is not None and lm.name == "s"


def test_hf_checkpoint_folders_expand_in_step_order(run):
  root, _ = run
  entries = expand(ConfigDict(dict(name="s", checkpoints=str(root / "hf_ckpts"), steps="every:2")))
  assert [e.checkpoint for e in entries] == ["step_10", "step_30", "step_40"]
  assert [e.source for e in entries] == ["hf"] * 3


def test_bad_checkpoint_entries_are_clear_errors(run, tmp_path):
  root, _ = run
  cases = [
    (dict(name="s", checkpoints=str(tmp_path / "nope")), "does not exist"),
    (dict(name="s", checkpoints=str(root / "checkpoints")), "set `path`"),
    (dict(name="s", checkpoints=str(root / "hf_ckpts"), steps=[15]), r"steps \[15\] are not among"),
    (dict(name="s", checkpoints=str(root / "hf_ckpts"), steps="some"), "'all', 'every:N'"),
    (dict(name="s", checkpoints=str(tmp_path)), "no checkpoint folders"),
    (dict(name="s"), "needs `path`"),
  ]
  for entry, message in cases:
    with pytest.raises(StudentConfigError, match=message):
      expand(ConfigDict(entry))


def test_orbax_step_loads_into_per_layer_params_too(run):
  root, _ = run
  (entry,) = expand(
    ConfigDict(dict(name="s", checkpoints=str(root / "checkpoints"), path=str(root / "hf"), steps=[30]))
  )
  scanned, unrolled = (
    load_student(entry, dtype="float32"),
    load_student(entry, dtype="float32", scan_layers=False),
  )
  assert "layers_0" in unrolled.params["params"]
  np.testing.assert_allclose(_logits(unrolled), _logits(scanned), atol=1e-5)


# --------------------------------------------------------------------------- a run that grows


def _save_steps(ckpt_dir, cfg, steps):
  """Checkpoints of a training run, as experiments.training.train saves them (params differ per step)."""
  opt = optax.adamw(1e-3)
  options = ocp.CheckpointManagerOptions(enable_async_checkpointing=False)
  with ocp.CheckpointManager(ckpt_dir, options=options) as mngr:
    for step in steps:
      params = init_params(cfg, jax.random.key(step))
      mngr.save(
        step, args=ocp.args.StandardSave({"params": params, "opt_state": opt.init(params)}), force=True
      )
    mngr.wait_until_finished()


@pytest.fixture
def growing_run(tmp_path):
  """A run with steps 10 and 20 so far, its HF export (config, tokenizer; the sweep's teacher too),
  and a sweep over its checkpoints (steps="all")."""
  from configs.base import base_config

  cfg = _cfg().replace(max_position_embeddings=1024)  # the synthetic task's prompts
  tok_dir = tmp_path / "tok"
  tiny_models.make_tokenizer(tok_dir)
  export_hf(tmp_path / "hf", cfg, init_params(cfg, jax.random.key(0)), tokenizer=tok_dir)
  _save_steps(tmp_path / "checkpoints", cfg, (10, 20))
  c = base_config()
  c.output_dir = str(tmp_path / "out")
  c.task.num_problems = 3
  c.students = [
    ConfigDict(
      dict(name="s", checkpoints=str(tmp_path / "checkpoints"), path=str(tmp_path / "hf"), steps="all")
    )
  ]
  c.teacher = ConfigDict(dict(name="t", path=str(tmp_path / "hf")))
  c.policies = ("never", "step:2")
  c.batch_size, c.max_new_tokens, c.step_delimiter = 4, 10, "e"
  return cfg, tmp_path / "checkpoints", c


def _loaded(monkeypatch) -> list:
  """The checkpoints the sweep loads a student for."""
  from experiments.sweep import run as sweep_run

  seen = []
  load = sweep_run.load_student
  monkeypatch.setattr(
    sweep_run, "load_student", lambda entry, **kw: seen.append(entry.checkpoint) or load(entry, **kw)
  )
  return seen


def test_a_new_checkpoint_of_a_run_decodes_only_its_rows(growing_run, monkeypatch):
  from sweep_configs import rows_of

  from experiments.sweep.run import run_sweep

  cfg, ckpts, c = growing_run
  loaded = _loaded(monkeypatch)
  assert run_sweep(c, progress=False)["decoded"] == 2 * 3 * 2 and loaded == ["step_10", "step_20"]
  before = (Path(c.output_dir) / "results.jsonl").read_bytes()
  _save_steps(ckpts, cfg, (30,))  # the run goes on training
  loaded.clear()
  stats = run_sweep(c, progress=False)
  assert (stats["decoded"], stats["kept"]) == (3 * 2, 2 * 3 * 2) and loaded == ["step_30"]
  assert (Path(c.output_dir) / "results.jsonl").read_bytes().startswith(before)
  assert {r["checkpoint"] for r in rows_of(c.output_dir).values()} == {"step_10", "step_20", "step_30"}
  m = json.loads((Path(c.output_dir) / "manifest.json").read_text())
  assert list(m["students"]) == ["s@step_10", "s@step_20", "s@step_30"]


def test_watch_runs_again_when_a_checkpoint_arrives(growing_run):
  from experiments.sweep.config import parse_config
  from experiments.sweep.run import run_sweep
  from experiments.sweep.watch import watch

  cfg, ckpts, c = growing_run
  stats, polls, said = [], [], []

  def sleep(seconds):
    polls.append(seconds)
    if len(polls) == 2:
      _save_steps(ckpts, cfg, (30,))  # seen at the 2nd poll, unchanged at the 3rd: run

  runs = watch(
    parse_config(c), lambda s: stats.append(run_sweep(s, progress=False)), 5.0, 2, sleep, said.append
  )
  assert runs == 2 and polls == [5.0] * 3 and "step_30" in said[0]
  assert [s["decoded"] for s in stats] == [2 * 3 * 2, 3 * 2]

  def interrupted(seconds):
    raise KeyboardInterrupt

  said.clear()
  assert watch(parse_config(c), lambda s: run_sweep(s, progress=False), 5.0, 0, interrupted, said.append) == 1
  assert said == ["watch: stopped after 1 run(s); finished rows are in the results (run again to resume)"]

"""Training from scratch: the loss falls, and an interrupted run resumes to bit-identical params."""

import json

import jax
import numpy as np
import pytest

from configs import train_teacher
from experiments.tasks.synthetic import SyntheticConfig, generate_problems
from experiments.tasks.synthetic_format import prompt_text, target_text
from experiments.tasks.synthetic_tokenizer import build_tokenizer
from experiments.training import train as train_lib
from experiments.training.train_data import batch_at, tokenize_examples
from model.hf_import import load_model, load_tokenizer
from model.lm import init_params

TINY = dict(hidden_size=32, num_layers=2, num_heads=2, intermediate_size=64, max_position_embeddings=192)


@pytest.fixture(scope="module")
def task(tmp_path_factory):
  """(examples, tokenizer dir) of a few synthetic train problems."""
  problems = generate_problems(SyntheticConfig(**train_teacher.SYNTHETIC), 48, "train")
  tok_dir = tmp_path_factory.mktemp("tok")
  build_tokenizer(tok_dir, problems)
  return [(prompt_text(p), target_text(p)) for p in problems], tok_dir


def _config(**overrides):
  c = train_teacher.get_config()
  c.model = dict(TINY)
  c.update(
    dict(
      batch_size=8,
      steps=6,
      save_every=3,
      log_every=1,
      eval_problems=0,
      optim=dict(c.optim, warmup_steps=2, learning_rate=1e-2),
    )
  )
  c.update(overrides)
  return c


def test_optimisation_steps_lower_the_loss(task):
  examples, tok_dir = task
  c = _config()
  tok = load_tokenizer(tok_dir)
  cfg = train_lib.model_config(c.model, len(tok), c.vocab_multiple)
  data = tokenize_examples(tok, examples, c.seq_len)
  batch = batch_at(data, 0, 0, 8)  # tokens [8, L]
  assert batch["loss_mask"].sum() > 0 and (batch["loss_mask"][:, 0] == 0).all()
  opt = train_lib.make_optimizer(dict(c.optim, warmup_steps=0), 20)
  params = init_params(cfg, jax.random.key(0))
  state = {"params": params, "opt_state": opt.init(params)}
  step = train_lib.make_train_step(cfg, opt)
  losses = []
  for _ in range(20):
    state, metrics = step(state, batch)
    losses.append(float(metrics["loss"]))
  assert losses[-1] < 0.7 * losses[0], losses


def _params(model_dir):
  return jax.tree.leaves(load_model(model_dir, with_tokenizer=False).params)


def test_resume_after_interruption_is_bit_identical(task, tmp_path):
  examples, tok_dir = task
  straight = train_lib.train(_config(), examples, tok_dir, tmp_path / "a")
  assert (straight.resumed_from, straight.last_step) == (0, 6)

  halted = train_lib.train(_config(halt_after_steps=4), examples, tok_dir, tmp_path / "b")
  assert halted.last_step == 4 and not (tmp_path / "b" / "hf").exists()
  resumed = train_lib.train(_config(), examples, tok_dir, tmp_path / "b")  # a fresh run in the same workdir
  assert (resumed.resumed_from, resumed.last_step) == (4, 6)

  for a, b in zip(_params(tmp_path / "a" / "hf"), _params(tmp_path / "b" / "hf")):
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
  steps = [json.loads(r)["step"] for r in (tmp_path / "b" / "metrics.jsonl").read_text().splitlines()]
  assert steps == [1, 2, 3, 4, 5, 6]  # nothing logged twice across the interruption
  info = json.loads((tmp_path / "a" / "hf" / "training.json").read_text())
  assert info["step"] == 6 and SyntheticConfig(
    **{k: tuple(v) if isinstance(v, list) else v for k, v in info["synthetic"].items()}
  )


def test_resume_with_changed_settings_is_refused(task, tmp_path):
  examples, tok_dir = task
  train_lib.train(_config(halt_after_steps=3), examples, tok_dir, tmp_path)
  with pytest.raises(train_lib.TrainConfigError, match="different"):
    train_lib.train(_config(seed=1), examples, tok_dir, tmp_path)


def test_bad_configs_are_clear_errors(task, tmp_path):
  examples, tok_dir = task
  with pytest.raises(train_lib.TrainConfigError, match="num_kv_heads"):
    train_lib.model_config(dict(TINY, num_heads=4, num_kv_heads=3), 100)
  with pytest.raises(train_lib.TrainConfigError, match="unknown model keys"):
    train_lib.model_config(dict(TINY, hiden_size=3), 100)
  with pytest.raises(ValueError, match="seq_len"):
    train_lib.train(_config(seq_len=32), examples, tok_dir, tmp_path)

"""Distillation keeps only the teacher's correct rationales, and trains a student on them."""

import json

import jax
import pytest

from configs import distill as distill_config
from configs import train_teacher
from experiments.tasks.answers import extract_answer
from experiments.tasks.synthetic import SyntheticConfig, generate_problems
from experiments.tasks.synthetic_format import target_text
from experiments.tasks.synthetic_tokenizer import build_tokenizer
from experiments.training import distill
from experiments.training.greedy_eval import is_correct
from experiments.training.train import export_model, model_config
from model.hf_import import load_model
from model.lm import init_params

TINY = dict(hidden_size=32, num_layers=2, num_heads=2, intermediate_size=64, max_position_embeddings=192)
TASK = SyntheticConfig(**train_teacher.SYNTHETIC)


def _config(tmp_path, teacher_dir, n=12):
  c = distill_config.get_config()
  c.update(
    dict(
      teacher_dir=str(teacher_dir),
      data_dir=str(tmp_path / "data"),
      workdir=str(tmp_path / "student"),
      num_distill_problems=n,
      decode_batch_size=8,
      max_new_tokens=48,
      batch_size=4,
      steps=4,
      save_every=2,
      log_every=1,
      eval_problems=0,
      student_size="tiny",
    )
  )
  c.optim.warmup_steps = 1
  c.sizes.tiny = dict(TINY)
  return c


@pytest.fixture(scope="module")
def teacher_dir(tmp_path_factory):
  """A tiny random 'teacher' exported the way experiments.training.train exports real ones."""
  root = tmp_path_factory.mktemp("teacher")
  build_tokenizer(root / "tok", generate_problems(TASK, 40, "train"))
  from model.hf_import import load_tokenizer

  cfg = model_config(TINY, len(load_tokenizer(root / "tok")))
  c = _config(root, root)
  return export_model(root / "hf", cfg, init_params(cfg, jax.random.key(0)), root / "tok", c)


def _wrong(problem):
  return target_text(problem).replace(f"#### {problem.answer}", f"#### {int(problem.answer) + 1}")


def test_filter_keeps_only_correct_rationales():
  problems = generate_problems(TASK, 4, "train")
  completions = [
    target_text(problems[0]) + "\nQuestion: Ava has 3 books.",  # right, then rambles on
    _wrong(problems[1]),  # wrong final answer
    " Ava has",  # no answer at all
    target_text(problems[3]),
  ]
  kept, counts = distill.filter_correct(problems, completions)
  assert [r["problem_id"] for r in kept] == [problems[0].problem_id, problems[3].problem_id]
  assert counts == {"generated": 4, "kept": 2, "dropped": 2, "kept_fraction": 0.5}
  assert kept[0]["target"] == target_text(problems[0])  # cut after the answer line, gold spacing
  with pytest.raises(ValueError, match="completions"):
    distill.filter_correct(problems, completions[:3])


def test_distillation_data_holds_only_correct_rationales(tmp_path, teacher_dir, monkeypatch):
  """Stub the teacher's generations (a random teacher is never right); the filter is the real one."""

  def fake_decode(lm, problems, **kw):
    return [target_text(p) if i % 3 else _wrong(p) for i, p in enumerate(problems)]

  monkeypatch.setattr(distill, "decode_greedy", fake_decode)
  c = _config(tmp_path, teacher_dir)
  out = distill.run_distill(c)

  rows = [json.loads(r) for r in (tmp_path / "data" / distill.DATA_FILE).read_text().splitlines()]
  counts = json.loads((tmp_path / "data" / distill.COUNTS_FILE).read_text())
  assert (counts["generated"], counts["kept"]) == (12, 8) and len(rows) == 8
  for r in rows:
    assert extract_answer(r["target"]) == r["answer"]
  student = load_model(out)
  assert student.cfg.hidden_size == TINY["hidden_size"]
  assert student.tokenizer.get_vocab() == load_model(teacher_dir).tokenizer.get_vocab()
  assert sorted(p.name for p in (tmp_path / "student" / "hf_ckpts").iterdir()) == ["step_2", "step_4"]


def test_real_teacher_decoding_is_filtered(tmp_path, teacher_dir):
  """Through the real decode loop: whatever the random teacher writes, kept rows are correct."""
  c = _config(tmp_path, teacher_dir, n=8)
  kept, counts = distill.teacher_rationales(c)
  assert counts["generated"] == 8 and counts["kept"] == len(kept)
  problems = {p.problem_id: p for p in generate_problems(TASK, 8, "train")}
  assert all(is_correct(problems[r["problem_id"]], r["target"]) for r in kept)
  again, _ = distill.teacher_rationales(c)  # reused from data_dir, not regenerated
  assert again == kept


def test_unknown_student_size_is_a_clear_error(tmp_path, teacher_dir):
  c = _config(tmp_path, teacher_dir)
  c.student_size = "huge"
  with pytest.raises(ValueError, match="student_size"):
    distill.run_distill(c)

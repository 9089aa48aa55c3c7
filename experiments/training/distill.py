"""Distil a small student on the teacher's own correct rationales.

  python -m experiments.training.distill --config configs/distill.py [--config.student_size=tiny ...]

1. The teacher (an HF dir) solves synthetic train problems greedily through the decode loop
   (GuidedDecoder with the teacher alone, batched, fixed shapes).
2. `filter_correct` keeps only rationales whose extracted answer is right, so the student never
   learns from a wrong chain: data_dir/distill_data.jsonl, with counts in distill_counts.json.
   Both are reused by later students when teacher, task and size of the set are unchanged.
3. experiments.training.train.train fits the student (same tokenizer and prompt format as the teacher).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Sequence

from absl import app, logging
from ml_collections import ConfigDict, config_flags

from experiments.cli import config_value, parse_flags
from experiments.files import atomic_write_text
from experiments.tasks.datasets import Problem
from experiments.tasks.synthetic import generate_problems
from experiments.tasks.synthetic_format import prompt_text, target_from_completion
from experiments.training.greedy_eval import decode_greedy, is_correct, synthetic_config_of
from experiments.training.train import (
  TrainConfigError,
  evaluate,
  quiet_orbax,
  synthetic_config,
  to_plain,
  train,
)
from model.errors import report_user_errors

DATA_FILE = "distill_data.jsonl"
COUNTS_FILE = "distill_counts.json"


def filter_correct(problems: Sequence[Problem], completions: Sequence[str]) -> tuple[list[dict], dict]:
  """Training rows for the completions whose final answer is correct, and the counts."""
  if len(problems) != len(completions):
    raise ValueError(f"{len(problems)} problems but {len(completions)} completions")
  kept = [
    {
      "problem_id": p.problem_id,
      "answer": p.answer,
      "prompt": prompt_text(p),
      "target": target_from_completion(c),
    }
    for p, c in zip(problems, completions)
    if is_correct(p, c)
  ]
  n = len(problems)
  counts = {
    "generated": n,
    "kept": len(kept),
    "dropped": n - len(kept),
    "kept_fraction": len(kept) / max(n, 1),
  }
  return kept, counts


def teacher_rationales(config: ConfigDict) -> tuple[list[dict], dict]:
  """Generates (or reuses) the filtered teacher rationales in config.data_dir."""
  teacher_dir = Path(config.teacher_dir)
  task = synthetic_config(config)
  if synthetic_config_of(teacher_dir) != task:
    raise TrainConfigError(
      f"config.synthetic {task} differs from the task the teacher in {teacher_dir} was "
      "trained on (its training.json); students must learn the teacher's task"
    )
  meta = {
    "teacher_dir": str(teacher_dir.absolute()),
    "synthetic": to_plain(config.synthetic),
    "num_problems": config.num_distill_problems,
    "max_new_tokens": config.max_new_tokens,
  }
  data_dir = Path(config.data_dir)
  counts_path, data_path = data_dir / COUNTS_FILE, data_dir / DATA_FILE
  if counts_path.exists() and data_path.exists():
    counts = json.loads(counts_path.read_text())
    if counts.get("meta") == meta:
      logging.info("reusing teacher rationales in %s: %s", data_dir, counts)
      return [json.loads(r) for r in data_path.read_text().splitlines() if r.strip()], counts

  from model.hf_import import load_model

  teacher = load_model(teacher_dir, name="teacher")
  problems = generate_problems(task, config.num_distill_problems, "train")
  completions = decode_greedy(
    teacher, problems, batch_size=config.decode_batch_size, max_new_tokens=config.max_new_tokens
  )
  kept, counts = filter_correct(problems, completions)
  counts["meta"] = meta
  data_dir.mkdir(parents=True, exist_ok=True)
  atomic_write_text(data_path, "".join(json.dumps(r) + "\n" for r in kept))
  atomic_write_text(counts_path, json.dumps(counts, indent=2) + "\n")  # written last: marks the data complete
  logging.info(
    "teacher rationales: %d of %d correct, kept in %s", counts["kept"], counts["generated"], data_path
  )
  return kept, counts


def run_distill(config: ConfigDict) -> Path:
  size = config.student_size
  if size not in config.sizes:
    raise TrainConfigError(f"student_size={size!r} is not one of config.sizes: {sorted(config.sizes)}")
  if not (Path(config.teacher_dir) / "config.json").exists():
    raise TrainConfigError(
      f"teacher_dir={config.teacher_dir!r} is not an HF model dir; train the teacher "
      "first (python -m experiments.training.train --config configs/train_teacher.py)"
    )
  kept, counts = teacher_rationales(config)
  if not kept:
    raise TrainConfigError(f"the teacher got none of {counts['generated']} problems right; nothing to distil")
  workdir = Path(config.workdir or f"runs/student-{size}")
  examples = [(r["prompt"], r["target"]) for r in kept]
  result = train(config, examples, config.teacher_dir, workdir, model_spec=config.sizes[size].to_dict())
  if result.last_step == config.steps and config.eval_problems > 0:
    evaluate(result.out_dir, config)
  return result.out_dir


def main(argv):
  del argv
  quiet_orbax()
  print(report_user_errors(lambda: run_distill(config_value(_CONFIG, "configs/distill.py"))))


if __name__ == "__main__":
  # Defined only when run as a program, so importing this module (tests, distill) adds no flags.
  _CONFIG = config_flags.DEFINE_config_file("config", None, "distillation config file (configs/distill.py)")
  app.run(main, flags_parser=parse_flags)  # bad flags: `error: ...`, exit 2

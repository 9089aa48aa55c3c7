"""The embedded default: the synthetic task with the shipped teacher and two distilled students.

python -m experiments.sweep --config configs/demo.py
"""

import re
from pathlib import Path

from ml_collections import ConfigDict

from configs.base import base_config

ASSETS = "assets/demo"
CHECKPOINTS = f"{ASSETS}/student-small-ckpts"  # step_N/ HF dirs saved during the student's training


def checkpoint_entries(name: str = "student-small", root: str = CHECKPOINTS) -> list[ConfigDict]:
  """One student entry per saved checkpoint, in training order (the checkpoint-based analysis)."""
  dirs = [d for d in Path(root).glob("step_*") if d.is_dir() and re.fullmatch(r"step_\d+", d.name)]
  dirs.sort(key=lambda d: int(d.name.split("_")[1]))
  return [ConfigDict(dict(name=name, path=str(d), checkpoint=d.name)) for d in dirs]


def get_config() -> ConfigDict:
  c = base_config()
  c.output_dir = "runs/demo"
  c.task.num_problems = 200
  # The generator settings the shipped models were trained with (assets/demo/*/training.json);
  # the test split is disjoint from their training problems by construction.
  c.task.synthetic = ConfigDict(
    dict(
      num_steps=(2, 4),
      num_distractors=(0, 2),
      number_range=(2, 9),
      multiplier_range=(2, 3),
      max_value=99,
      operations="+-*",
      seed=0,
    )
  )
  c.prompt_style = "cot"
  c.students = [
    ConfigDict(dict(name="student-small", path=f"{ASSETS}/student-small", checkpoint=None)),
    ConfigDict(dict(name="student-tiny", path=f"{ASSETS}/student-tiny", checkpoint=None)),
  ]
  c.students += checkpoint_entries()
  c.teacher = ConfigDict(dict(name="teacher", path=f"{ASSETS}/teacher"))
  c.policies = ("never", "always", "step:1", "step:2", "step:3", "step:4")
  c.batch_size = 50
  c.max_new_tokens = 96
  return c

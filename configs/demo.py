"""The embedded default: the synthetic task with the shipped teacher and two distilled students.

python -m experiments.sweep --config configs/demo.py
"""

from ml_collections import ConfigDict

from configs.base import base_config

ASSETS = "assets/demo"
CHECKPOINTS = f"{ASSETS}/student-small-ckpts"  # step_N/ HF dirs saved during the student's training


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
  # The small student's training run, one student per saved checkpoint (step_N/ HF folders).
  c.students.append(ConfigDict(dict(name="student-small", checkpoints=CHECKPOINTS, steps="all")))
  c.teacher = ConfigDict(dict(name="teacher", path=f"{ASSETS}/teacher"))
  c.policies = ("never", "always", "step:1", "step:2", "step:3", "step:4")
  c.batch_size = 50
  c.max_new_tokens = 96
  return c

"""The embedded default: the synthetic task with the shipped teacher and two distilled students.

  python -m experiments.sweep --config configs/demo.py
"""
from ml_collections import ConfigDict

from configs.base import base_config

ASSETS = "assets/demo"


def get_config() -> ConfigDict:
  c = base_config()
  c.output_dir = "runs/demo"
  c.task.num_problems = 200
  c.prompt_style = "cot"
  c.students = [ConfigDict(dict(name="student-small", path=f"{ASSETS}/student-small", checkpoint=None)),
                ConfigDict(dict(name="student-tiny", path=f"{ASSETS}/student-tiny", checkpoint=None))]
  c.teacher = ConfigDict(dict(name="teacher", path=f"{ASSETS}/teacher"))
  c.policies = ("never", "always", "step:1", "step:2", "step:3", "step:4")
  c.batch_size = 50
  c.max_new_tokens = 96
  return c

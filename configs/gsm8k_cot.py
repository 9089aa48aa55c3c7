"""GSM8K, 4-shot chain of thought, greedy (the paper's setting). Point the paths at local files:

  python -m experiments.sweep --config configs/gsm8k_cot.py --config.task.path=data/gsm8k/test.jsonl \
      --config.exemplars.path=data/gsm8k/train.jsonl "--config.students[0].path=..." --config.teacher.path=...
"""

from ml_collections import ConfigDict

from configs.base import base_config


def get_config() -> ConfigDict:
  c = base_config()
  c.output_dir = "runs/gsm8k_cot"
  c.task = ConfigDict(dict(name="gsm8k", path="", num_problems=-1))
  c.exemplars = ConfigDict(dict(path="", task="gsm8k", k=4, seed=0))
  c.prompt_style = "cot"
  c.students = [ConfigDict(dict(name="student", path="", checkpoint=None))]
  c.teacher.name, c.teacher.path = "teacher", ""  # keeps base_config's served-teacher keys (url, ...)
  c.policies = (
    "never",
    "always",
    "step:1",
    "step:2",
    "step:3",
    "step:4",
    "step:5",
    "hint:1,m=16",
    "entropy:1.0",
    "random:0.25",
  )
  c.max_new_tokens = 256
  c.batch_size = 32
  c.dtype = "bfloat16"
  return c

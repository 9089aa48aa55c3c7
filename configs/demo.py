"""The embedded default: the synthetic task with the shipped teacher and two distilled students.

python -m experiments.sweep --config configs/demo.py

`hard_step_config(k)`: the timing variants `make demo` runs after it (same models, no retraining).
"""

from ml_collections import ConfigDict

from configs.base import base_config

ASSETS = "assets/demo"
# The timing variants after the main sweep: (hard step, how its competing quantity reads), one dir each.
HARD_VARIANTS = ((1, "step"), (2, "step"), (1, "count"), (2, "count"))
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
  c.teacher.name, c.teacher.path = "teacher", f"{ASSETS}/teacher"
  c.policies = ("never", "always", "step:1", "step:2", "step:3", "step:4")
  c.batch_size = 50
  c.max_new_tokens = 96
  return c


def hard_step_config(k: int, phrasing: str = "step") -> ConfigDict:
  """Timing in isolation: 3-step problems whose one distractor competes with step k's operand.

  No other distractors, and every problem has three steps, so if the best step for the teacher tracks
  the hard step, the peak moves with k; step 3 is always the last computation (leakage) in both.
  "step" phrasing is new to the shipped models (teacher included); "count" is the distractor they know.
  """
  c = get_config()
  c.output_dir = f"runs/demo/hard_step_{k}" + ("" if phrasing == "step" else f"_{phrasing}")
  c.task.synthetic.num_steps = (3, 3)
  c.task.synthetic.num_distractors = (0, 0)
  c.task.synthetic.hard_step = k
  c.task.synthetic.hard_phrasing = phrasing
  c.students = [s for s in c.students if s.get("path")]  # the two main students, no checkpoints
  c.policies = ("never", "step:1", "step:2", "step:3")
  return c

"""Demo students distilled from the demo teacher's correct rationales.

  python -m experiments.training.distill --config configs/distill.py --config.student_size=small
  python -m experiments.training.distill --config configs/distill.py --config.student_size=tiny

Students are deliberately small and briefly trained: the study needs students well below the
teacher, so that guidance has room to help.
"""

from ml_collections import ConfigDict

from configs.train_teacher import training_fields

SIZES = {
  "small": dict(
    family="llama",
    hidden_size=96,
    num_layers=3,
    num_heads=3,
    intermediate_size=256,
    max_position_embeddings=256,
  ),  # ~0.42M params
  "tiny": dict(
    family="llama",
    hidden_size=48,
    num_layers=2,
    num_heads=2,
    intermediate_size=128,
    max_position_embeddings=256,
  ),  # ~0.1M params
}


def get_config() -> ConfigDict:
  c = ConfigDict()
  c.teacher_dir = (
    "runs/teacher/hf"  # HF dir written by experiments.training.train (assets/demo/teacher ships one)
  )
  c.student_size = "small"  # a key of `sizes`
  c.sizes = {k: dict(v) for k, v in SIZES.items()}
  c.workdir = ""  # "" = runs/student-<student_size>
  c.data_dir = "runs/distill_data"  # teacher rationales, shared by every student size
  c.num_distill_problems = 8000  # synthetic train problems the teacher solves
  c.decode_batch_size = 250
  training_fields(c)  # same trainer settings as the teacher, then:
  c.steps = 600
  c.optim.learning_rate = 3e-3
  c.optim.warmup_steps = 50
  c.save_every = 150
  c.keep = 4
  c.export_checkpoints = True  # workdir/hf_ckpts/step_N for the checkpoint analysis
  return c

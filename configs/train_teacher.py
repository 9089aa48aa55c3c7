"""Demo teacher: a ~1.9M-param Llama trained from scratch on the synthetic task.

python -m experiments.training.train --config configs/train_teacher.py [--config.steps=1600 ...]
"""

from ml_collections import ConfigDict

# The synthetic task every demo model is trained and evaluated on (experiments.tasks.synthetic knobs).
SYNTHETIC = dict(
  num_steps=(2, 4),
  num_distractors=(0, 2),
  number_range=(2, 9),
  multiplier_range=(2, 3),
  operations="+-*",
  max_value=99,
  seed=0,
)

TEACHER_MODEL = dict(
  family="llama",
  hidden_size=160,
  num_layers=6,
  num_heads=5,
  num_kv_heads=5,
  intermediate_size=448,
  max_position_embeddings=256,
  tie_word_embeddings=False,
)

OPTIM = dict(
  learning_rate=2e-3,
  warmup_steps=100,
  final_lr_fraction=0.05,
  weight_decay=0.1,
  b1=0.9,
  b2=0.98,
  clip_norm=1.0,
)


def training_fields(c: ConfigDict) -> ConfigDict:
  """Fields experiments.training.train.train() reads; shared with configs/distill.py."""
  c.seed = 0
  c.synthetic = dict(SYNTHETIC)
  c.vocab_multiple = 64  # embedding rows padded past the tokenizer, as real models are
  c.batch_size = 32
  c.seq_len = 176  # longest synthetic example is ~165 tokens
  c.steps = 1600
  c.optim = dict(OPTIM)
  c.save_every = 250  # orbax checkpoint period (steps)
  c.keep = 3  # checkpoints kept
  c.export_checkpoints = False  # also export an HF dir per save (workdir/hf_ckpts/step_N)
  c.export_dtype = "float32"  # HF storage dtype: float32 | bfloat16
  c.halt_after_steps = 0  # >0: stop (with a checkpoint) after this step, e.g. to simulate preemption
  c.log_every = 50
  c.eval_problems = 500  # greedy test-split accuracy after training (0 = skip)
  c.eval_batch_size = 125
  c.max_new_tokens = 96
  return c


def get_config() -> ConfigDict:
  c = ConfigDict()
  c.workdir = "runs/teacher"
  c.num_train_problems = 40000
  c.tokenizer_dir = ""  # "" = build from the synthetic train split into workdir/tokenizer
  c.tokenizer_vocab_size = 512
  c.model = dict(TEACHER_MODEL)
  training_fields(c)
  return c

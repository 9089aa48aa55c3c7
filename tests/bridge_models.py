"""Two tiny random models whose tokenizers hold the same words under different ids.

Word-level tokenizers (the `tokenizers` library, as experiments/bench/models.py builds them): every
token is a word plus one space or newline ("w17 ", "w20\\n"), so text round-trips exactly through
either tokenizer, and every `DELIMITER_EVERY`-th word ends a step. The teacher's ids are a
permutation of the student's, so the two vocabularies differ and guidance needs the text bridge.
Models are random Llamas saved with save_pretrained; special tokens get zero output rows, so greedy
decoding never ends a row early with EOS.
"""

from __future__ import annotations

import random
from pathlib import Path

from experiments.bench.models import word_level_tokenizer

SPECIALS = ["<pad>", "<bos>", "<eos>", "<unk>"]
WORDS = 60
DELIMITER_EVERY = 4


def word(i: int) -> str:
  return f"w{i}\n" if i % DELIMITER_EVERY == 0 else f"w{i} "


def make_tokenizer(out_dir: Path, order: list[int]):
  """Specials first, then the words in `order` (a permutation of range(WORDS))."""
  fast = word_level_tokenizer({t: i for i, t in enumerate(SPECIALS + [word(w) for w in order])})
  fast.save_pretrained(str(out_dir))
  return fast


def make_model(out_dir: Path, seed: int, hidden: int, layers: int) -> None:
  import torch
  import transformers

  cfg = transformers.LlamaConfig(
    vocab_size=len(SPECIALS) + WORDS,
    hidden_size=hidden,
    intermediate_size=2 * hidden,
    num_hidden_layers=layers,
    num_attention_heads=4,
    num_key_value_heads=2,
    max_position_embeddings=128,
    rms_norm_eps=1e-6,
    initializer_range=0.3,
    bos_token_id=1,
    eos_token_id=2,
    pad_token_id=0,
    tie_word_embeddings=False,
  )
  torch.manual_seed(seed)
  model = transformers.LlamaForCausalLM(cfg).eval()
  with torch.no_grad():
    model.lm_head.weight[: len(SPECIALS)] = 0.0  # specials never win greedy argmax
  model.save_pretrained(str(out_dir), safe_serialization=True)


def make_bridge_pair(root: str | Path) -> tuple[Path, Path]:
  """(student dir, teacher dir): word ids in order for the student, shuffled for the teacher."""
  root = Path(root)
  s_dir, t_dir = root / "student", root / "teacher"
  make_model(s_dir, seed=21, hidden=32, layers=2)
  make_model(t_dir, seed=22, hidden=48, layers=3)
  order = list(range(WORDS))
  make_tokenizer(s_dir, order)
  random.Random(5).shuffle(order)
  make_tokenizer(t_dir, order)
  return s_dir, t_dir


PROMPTS = ["w5 w9 w13 w2\nw7 ", "w30 w31 w8\n", "w44 w1 w17 w19 w23 w40\n", "w3 w11 "]

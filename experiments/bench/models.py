"""Random Llama-style student/teacher pairs and a step-friendly tokenizer for the benchmark.

Everything is made locally (no downloads): transformers builds the models from a config with
torch.manual_seed, save_pretrained writes them, and the benchmark loads our side through the real
import path (model.hf_import.load_model), so both sides run the same weights.

The tokenizer is a WordLevel vocabulary of `vocab_size` word tokens ("w17 ", ...) in which every
`delimiter_every`-th id's text ends with "\\n" instead of a space. A random model's greedy output is
then a step delimiter about once every `delimiter_every` tokens, so guided "step:K" policies end
their steps as they would on real text (random models rarely emit a real "\\n" token otherwise).

Special tokens (<pad>, <bos>, <eos>, <unk>) get all-zero output embeddings: their logit is exactly 0
while the largest of ~8k random logits is several standard deviations above 0, so greedy decoding
never emits EOS and every row runs its full token budget on both sides (the benchmark verifies it).

Also the setup the benchmark's sections share (experiments/bench_decode.py, bench_guided.py,
bench_sweep.py): `setup` builds a pair and loads both sides into a `Context`, plus the timing,
logging and machine helpers they all use.
"""

from __future__ import annotations

import dataclasses
import os
import platform
import statistics
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Callable

if TYPE_CHECKING:
  from experiments.bench.run import Preset

SPECIALS = ["<pad>", "<bos>", "<eos>", "<unk>"]
PAD_ID, BOS_ID, EOS_ID, UNK_ID = range(4)


@dataclasses.dataclass(frozen=True)
class ModelSize:
  hidden_size: int
  num_layers: int
  num_heads: int
  intermediate_size: int

  def num_params(self, vocab_size: int) -> int:
    h, i, L = self.hidden_size, self.intermediate_size, self.num_layers
    per_layer = 4 * h * h + 3 * h * i + 2 * h
    return L * per_layer + 2 * vocab_size * h + h


@dataclasses.dataclass(frozen=True)
class PairSpec:
  """Sizes of one benchmark pair; `full` is issue 7's setting, `tiny` is for the smoke test."""

  vocab_size: int
  student: ModelSize
  teacher: ModelSize
  max_positions: int = 256
  delimiter_every: int = 20
  init_std: float = 0.05  # HF's default 0.02 makes greedy output collapse into repeats (no steps)


FULL = PairSpec(
  vocab_size=8192,
  student=ModelSize(hidden_size=512, num_layers=8, num_heads=8, intermediate_size=1408),
  teacher=ModelSize(hidden_size=1024, num_layers=14, num_heads=16, intermediate_size=3072),
  max_positions=2048,  # room for the realsize section's 4-shot prompts (~980 tokens + 128 new)
)
TINY = PairSpec(
  vocab_size=512,
  student=ModelSize(hidden_size=32, num_layers=2, num_heads=4, intermediate_size=64),
  teacher=ModelSize(hidden_size=48, num_layers=3, num_heads=4, intermediate_size=96),
  max_positions=128,
  delimiter_every=5,
  init_std=0.3,
)


def token_text(i: int, delimiter_every: int) -> str:
  if i < len(SPECIALS):
    return SPECIALS[i]
  return f"w{i}\n" if i % delimiter_every == 0 else f"w{i} "


def word_level_tokenizer(vocab: dict[str, int]):
  """A WordLevel tokenizer over pieces "word + one space or newline" (SPECIALS named as such);
  decoding concatenates the pieces, so encode(decode(ids)) == ids."""
  from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers

  tok = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
  tok.pre_tokenizer = pre_tokenizers.Split(Regex(r"[^ \n]+[ \n]?"), behavior="isolated")
  tok.decoder = decoders.Fuse()
  return fast_tokenizer(tok)


def fast_tokenizer(tok):
  """A `tokenizers.Tokenizer` as transformers' fast tokenizer, with SPECIALS named (<pad> <bos> <eos>
  <unk>) and no clean-up of spaces, so decoding is the tokenizer's own."""
  from transformers import PreTrainedTokenizerFast

  return PreTrainedTokenizerFast(
    tokenizer_object=tok,
    pad_token="<pad>",
    bos_token="<bos>",
    eos_token="<eos>",
    unk_token="<unk>",
    clean_up_tokenization_spaces=False,
  )


def make_tokenizer(out_dirs, vocab_size: int, delimiter_every: int):
  """WordLevel tokenizer saved (PreTrainedTokenizerFast.save_pretrained) into every dir of out_dirs."""
  vocab = {token_text(i, delimiter_every): i for i in range(vocab_size)}
  assert len(vocab) == vocab_size
  fast = word_level_tokenizer(vocab)
  for d in out_dirs:
    fast.save_pretrained(str(d))
  return fast


def _hf_config(spec: PairSpec, size: ModelSize):
  import transformers

  return transformers.LlamaConfig(
    vocab_size=spec.vocab_size,
    hidden_size=size.hidden_size,
    intermediate_size=size.intermediate_size,
    num_hidden_layers=size.num_layers,
    num_attention_heads=size.num_heads,
    num_key_value_heads=size.num_heads,
    max_position_embeddings=spec.max_positions,
    rms_norm_eps=1e-6,
    initializer_range=spec.init_std,
    bos_token_id=BOS_ID,
    eos_token_id=EOS_ID,
    pad_token_id=PAD_ID,
    tie_word_embeddings=False,
  )


def make_model(out_dir: str | Path, spec: PairSpec, size: ModelSize, seed: int):
  """Random float32 Llama saved to out_dir; returns the torch model (eval mode)."""
  import torch
  import transformers

  torch.manual_seed(seed)
  model = transformers.LlamaForCausalLM(_hf_config(spec, size)).eval()
  with torch.no_grad():
    model.lm_head.weight[: len(SPECIALS)] = 0.0  # specials (EOS included) never win greedy argmax
  model.generation_config.pad_token_id = PAD_ID
  model.generation_config.eos_token_id = EOS_ID
  model.generation_config.bos_token_id = BOS_ID
  model.save_pretrained(str(out_dir), safe_serialization=True)
  return model


def make_pair(root: str | Path, spec: PairSpec, seed: int = 0):
  """Student and teacher dirs (config, safetensors, shared tokenizer) under root.

  Returns (student_dir, teacher_dir, torch_student, torch_teacher, tokenizer).
  """
  root = Path(root)
  s_dir, t_dir = root / "student", root / "teacher"
  torch_s = make_model(s_dir, spec, spec.student, seed)
  torch_t = make_model(t_dir, spec, spec.teacher, seed + 1)
  tok = make_tokenizer([s_dir, t_dir], spec.vocab_size, spec.delimiter_every)
  return s_dir, t_dir, torch_s, torch_t, tok


def random_prompts(n: int, length: int, vocab_size: int, seed: int) -> list[list[int]]:
  """Prompt ids drawn from the ordinary word tokens (no specials)."""
  import numpy as np

  rng = np.random.default_rng(seed)
  return rng.integers(len(SPECIALS), vocab_size, size=(n, length)).tolist()


# -- shared by the benchmark's sections ------------------------------------------------------------
def log(msg: str) -> None:
  print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def median(xs) -> float:
  return float(statistics.median(xs))


def timed(fn: Callable[[], object]) -> tuple[float, object]:
  t0 = time.perf_counter()
  out = fn()
  return time.perf_counter() - t0, out


def interleaved(fns: dict[str, Callable[[], object]], repeats: int) -> tuple[dict[str, list[float]], dict]:
  """Runs each fn once per round, round after round; returns times and each fn's last output."""
  times = {k: [] for k in fns}
  outs = {}
  for _ in range(repeats):
    for k, fn in fns.items():
      dt, outs[k] = timed(fn)
      times[k].append(dt)
  return times, outs


def cpu_count() -> int:
  try:
    return len(os.sched_getaffinity(0))
  except AttributeError:
    return os.cpu_count() or 1


def cpu_model() -> str:
  try:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
      if line.startswith("model name"):
        return line.split(":", 1)[1].strip()
  except OSError:
    pass
  return platform.processor() or platform.machine()


@dataclasses.dataclass
class Context:
  preset: Preset
  student: object  # our LanguageModel
  teacher: object
  hf_student: object  # torch models loaded with from_pretrained from the same dirs
  hf_teacher: object
  tokenizer: object
  student_dir: Path
  teacher_dir: Path
  prompts: list[list[int]]  # batch x prompt_len
  max_len: int

  def roundtrip(self, ids: list[int]) -> list[int]:
    """ids -> text -> ids, the way the sweep runner encodes its prompts."""
    return self.tokenizer(self.tokenizer.decode(ids), add_special_tokens=True)["input_ids"]


def setup(preset: Preset, root: Path) -> Context:
  import jax
  import torch
  import transformers

  from decode.host.batching import round_up
  from decode.host.options import DecodeOptions
  from model.hf_import import load_model

  transformers.logging.set_verbosity_error()
  transformers.utils.logging.disable_progress_bar()
  p = preset
  t0 = time.perf_counter()
  s_dir, t_dir, torch_s, torch_t, tok = make_pair(root, p.pair, seed=0)
  del torch_s, torch_t
  student, teacher = load_model(s_dir), load_model(t_dir)
  hf_s = transformers.AutoModelForCausalLM.from_pretrained(str(s_dir), dtype=torch.float32).eval()
  hf_t = transformers.AutoModelForCausalLM.from_pretrained(str(t_dir), dtype=torch.float32).eval()
  prompts = random_prompts(max(p.batch, p.sweep_prompts), p.prompt_len, p.pair.vocab_size, seed=1)
  max_len = round_up(p.prompt_len + p.max_new_tokens, DecodeOptions.length_bucket)
  log(
    f"setup: models built, saved and loaded in {time.perf_counter() - t0:.1f}s "
    f"(jax {jax.__version__}, torch {torch.__version__}, {torch.get_num_threads()} torch threads)"
  )
  return Context(
    preset=p,
    student=student,
    teacher=teacher,
    hf_student=hf_s,
    hf_teacher=hf_t,
    tokenizer=tok,
    student_dir=s_dir,
    teacher_dir=t_dir,
    prompts=prompts,
    max_len=max_len,
  )

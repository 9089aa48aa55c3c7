"""A small, deterministic tokenizer for the synthetic task's tiny student and teacher.

Byte-level BPE trained on the synthetic corpus, so any text round-trips exactly
(decode(encode(text)) == text) while the vocabulary stays a few hundred ids. A split
pre-tokenizer keeps every digit its own token (arithmetic stays learnable), keeps "\\n"
a single token on its own (the decode loop finds step ends by decoding each id alone and
looking for the delimiter), and keeps "<<", ">>" and "####" whole.

Special tokens: <pad>=0, <bos>=1, <eos>=2, <unk>=3. Encoding prepends <bos> (as Llama
tokenizers do); pass add_special_tokens=False to skip it. <eos> is never added
automatically -- training code appends it to targets.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Iterable

from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, processors, trainers
from transformers import PreTrainedTokenizerFast

from experiments.tasks.datasets import Problem
from experiments.tasks.prompts import INSTRUCTION, format_exemplar
from model.errors import UserError

PAD, BOS, EOS, UNK = "<pad>", "<bos>", "<eos>", "<unk>"
SPECIAL_TOKENS = (PAD, BOS, EOS, UNK)
DEFAULT_VOCAB_SIZE = 512

# Pieces BPE may merge within but never across: a word with its leading space, ONE digit
# (with an optional leading space), runs of '#', '<<', '>>', a lone newline, one other
# symbol, or any other single whitespace character.
PIECE_PATTERN = r" ?[A-Za-z]+| ?\d| ?#+| ?<<| ?>>|\n| ?[^\sA-Za-z\d]|\s"


class TokenizerBuildError(UserError):
  """The tokenizer cannot be built from what was given."""


def corpus_texts(problems_or_texts: Iterable[Problem | str]) -> list[str]:
  """Training texts: raw strings as given; problems in every few-shot prompt style."""
  texts: list[str] = [INSTRUCTION]
  for item in problems_or_texts:
    if isinstance(item, Problem):
      texts.extend(format_exemplar(item, style) for style in ("cot", "subques", "questcot"))
    elif isinstance(item, str):
      texts.append(item)
    else:
      raise TokenizerBuildError(f"expected Problem or str in the corpus, got {type(item).__name__}")
  if len(texts) == 1:
    raise TokenizerBuildError("empty corpus: pass the synthetic train problems or texts")
  return texts


def train_bpe(texts: list[str], vocab_size: int = DEFAULT_VOCAB_SIZE) -> Tokenizer:
  """A byte-level BPE `tokenizers.Tokenizer` trained on `texts` (deterministic)."""
  alphabet = pre_tokenizers.ByteLevel.alphabet()
  minimum = len(alphabet) + len(SPECIAL_TOKENS)
  if vocab_size < minimum:
    raise TokenizerBuildError(f"vocab_size={vocab_size}: need at least {minimum}")
  tokenizer = Tokenizer(models.BPE())
  tokenizer.pre_tokenizer = pre_tokenizers.Sequence(
    [
      pre_tokenizers.Split(Regex(PIECE_PATTERN), behavior="isolated"),
      pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
    ]
  )
  tokenizer.decoder = decoders.ByteLevel()
  trainer = trainers.BpeTrainer(
    vocab_size=vocab_size,
    special_tokens=list(SPECIAL_TOKENS),
    initial_alphabet=sorted(alphabet),
    min_frequency=2,
    show_progress=False,
  )
  tokenizer.train_from_iterator(texts, trainer)
  bos_id = tokenizer.token_to_id(BOS)
  tokenizer.post_processor = processors.TemplateProcessing(
    single=f"{BOS} $A", pair=f"{BOS} $A {BOS} $B", special_tokens=[(BOS, bos_id)]
  )
  return tokenizer


def _write_portable_config(out_dir: Path) -> None:
  """Name the class PreTrainedTokenizerFast (loadable by transformers 4 and 5) and write
  special_tokens_map.json, which transformers 5 no longer writes itself."""
  config_path = out_dir / "tokenizer_config.json"
  config = json.loads(config_path.read_text(encoding="utf-8"))
  config["tokenizer_class"] = "PreTrainedTokenizerFast"
  config_path.write_text(json.dumps(config, indent=2, sort_keys=True) + "\n", encoding="utf-8")
  special_map = {"pad_token": PAD, "bos_token": BOS, "eos_token": EOS, "unk_token": UNK}
  (out_dir / "special_tokens_map.json").write_text(
    json.dumps(special_map, indent=2, sort_keys=True) + "\n", encoding="utf-8"
  )


def build_tokenizer(
  out_dir: str | Path,
  problems_or_texts: Iterable[Problem | str],
  vocab_size: int = DEFAULT_VOCAB_SIZE,
) -> PreTrainedTokenizerFast:
  """Train the synthetic-task tokenizer, save it to `out_dir` in Hugging Face layout
  (tokenizer.json, tokenizer_config.json, special_tokens_map.json) and return it."""
  out_dir = Path(out_dir)
  out_dir.mkdir(parents=True, exist_ok=True)
  backend = train_bpe(corpus_texts(problems_or_texts), vocab_size)
  tokenizer = PreTrainedTokenizerFast(
    tokenizer_object=backend,
    bos_token=BOS,
    eos_token=EOS,
    pad_token=PAD,
    unk_token=UNK,
    clean_up_tokenization_spaces=False,
  )
  tokenizer.save_pretrained(str(out_dir))
  _write_portable_config(out_dir)
  return tokenizer

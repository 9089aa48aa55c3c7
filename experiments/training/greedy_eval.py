"""Greedy single-model decoding of synthetic problems through the real decode loop, and accuracy.

Used to generate the teacher's distillation rationales and to measure teacher-only /
student-only accuracy of the demo models -- both through GuidedDecoder, as the sweep decodes.

  python -m experiments.training.greedy_eval --model assets/demo/teacher [--n 500] [--split test]

The synthetic task settings come from the model directory's training.json (written by
experiments.training.train), so a model is always evaluated on the task it was trained for.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Sequence

from tqdm import tqdm

from decode.api import DecodeRequest
from decode.host.guided import GuidedDecoder
from experiments.tasks.answers import score
from experiments.tasks.datasets import Problem
from experiments.tasks.synthetic import SyntheticConfig, generate_problems
from experiments.tasks.synthetic_format import prompt_text
from model.errors import MissingFileError, report_user_errors
from model.lm import LanguageModel

TRAINING_FILE = "training.json"


def is_correct(problem: Problem, completion: str) -> bool:
  """The study's correctness rule: the extracted final answer matches the gold answer."""
  return score(completion, problem.answer)[1]


def decode_greedy(
  lm: LanguageModel,
  problems: Sequence[Problem],
  *,
  batch_size: int = 128,
  max_new_tokens: int = 96,
  progress: bool = True,
) -> list[str]:
  """Completions of `lm` alone (policy 'never', temperature 0), in fixed-shape batches."""
  if not problems:
    return []
  decoder = GuidedDecoder(lm)
  prompt_ids = decoder.encode([prompt_text(p) for p in problems])
  longest = max(len(p) for p in prompt_ids)
  max_len = decoder.buffer_length(longest, max_new_tokens)  # one shape for every batch
  completions: list[str] = []
  starts = range(0, len(prompt_ids), batch_size)
  for start in tqdm(starts, desc=f"greedy {lm.name}", disable=not progress, leave=False):
    rows = decoder.generate(
      DecodeRequest(
        prompt_ids[start : start + batch_size],
        "never",
        max_new_tokens=max_new_tokens,
        max_len=max_len,
        batch_size=batch_size,
      )
    )
    completions.extend(r.completion for r in rows)
  return completions


def accuracy(problems: Sequence[Problem], completions: Sequence[str]) -> float:
  if len(problems) != len(completions):
    raise ValueError(f"{len(problems)} problems but {len(completions)} completions")
  return sum(is_correct(p, c) for p, c in zip(problems, completions)) / max(len(problems), 1)


def synthetic_config_of(model_dir: str | Path) -> SyntheticConfig:
  """The SyntheticConfig a model in `model_dir` was trained on (from its training.json)."""
  path = Path(model_dir) / TRAINING_FILE
  if not path.exists():
    raise MissingFileError(
      f"{path} is missing: the model was not trained by experiments.training.train, "
      "so its synthetic task settings are unknown"
    )
  raw = json.loads(path.read_text())["synthetic"]
  return SyntheticConfig(**{k: tuple(v) if isinstance(v, list) else v for k, v in raw.items()})


def evaluate_dir(
  model_dir: str | Path,
  n: int,
  split: str = "test",
  batch_size: int = 128,
  max_new_tokens: int = 96,
  dtype: str = "float32",
) -> dict:
  from model.hf_import import load_model

  lm = load_model(model_dir, dtype=dtype)
  problems = generate_problems(synthetic_config_of(model_dir), n, split)
  completions = decode_greedy(lm, problems, batch_size=batch_size, max_new_tokens=max_new_tokens)
  return {"model": str(model_dir), "split": split, "n": n, "accuracy": accuracy(problems, completions)}


def main(argv=None) -> int:
  p = argparse.ArgumentParser(
    prog="python -m experiments.training.greedy_eval", description=__doc__.split("\n\n")[0]
  )
  p.add_argument(
    "--model", required=True, nargs="+", help="HF model directories written by experiments.training.train"
  )
  p.add_argument("--n", type=int, default=500, help="number of problems")
  p.add_argument("--split", default="test", choices=["train", "dev", "test"])
  p.add_argument("--batch-size", type=int, default=125)
  p.add_argument("--max-new-tokens", type=int, default=96)
  p.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"])
  args = p.parse_args(argv)
  for model_dir in args.model:
    result = report_user_errors(
      lambda: evaluate_dir(model_dir, args.n, args.split, args.batch_size, args.max_new_tokens, args.dtype)
    )
    print(json.dumps(result))
  return 0


if __name__ == "__main__":
  sys.exit(main())

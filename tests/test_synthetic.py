"""The embedded synthetic task and its tokenizer."""

import json
import re

import pytest
from transformers import AutoTokenizer

from experiments.tasks.datasets import load_gsm8k, load_task
from experiments.tasks.prompts import build_prompt, format_exemplar, select_exemplars
from experiments.tasks.synthetic import (
  NAMES,
  OBJECTS,
  SyntheticConfig,
  SyntheticConfigError,
  generate_problems,
  split_of_question,
  write_gsm8k_jsonl,
)
from experiments.tasks.synthetic_tokenizer import BOS, EOS, PAD, UNK, build_tokenizer

ANNOTATION = re.compile(r"<<(\d+)([+\-*])(\d+)=(\d+)>>(\d+)")
CFG = SyntheticConfig(seed=3)


@pytest.fixture(scope="module")
def train():
  return generate_problems(CFG, 300, "train")


@pytest.fixture(scope="module")
def test_split():
  return generate_problems(CFG, 100, "test")


def test_generation_is_deterministic_in_the_seed(train):
  assert generate_problems(CFG, 300, "train") == train
  assert generate_problems(SyntheticConfig(seed=4), 300, "train") != train
  # A prefix request yields the same first problems.
  assert generate_problems(CFG, 20, "train") == train[:20]


def evaluate_chain(problem):
  """Check every annotation's arithmetic and that steps chain; return the final value."""
  previous = None
  for line in problem.rationale.splitlines():
    ((a, op, b, claimed, shown),) = ANNOTATION.findall(line)
    a, b, claimed, shown = int(a), int(b), int(claimed), int(shown)
    actual = {"+": a + b, "-": a - b, "*": a * b}[op]
    assert actual == claimed == shown, line
    if previous is not None:
      assert a == previous, f"step does not continue the chain: {line}"
    assert 0 <= actual <= CFG.max_value
    previous = actual
  return previous


def test_rationale_arithmetic_and_final_answer(train, test_split):
  for problem in train + test_split:
    assert str(evaluate_chain(problem)) == problem.answer
    steps = problem.rationale.count("\n") + 1
    assert CFG.num_steps[0] <= steps <= CFG.num_steps[1]
    assert problem.question.endswith("have now?")


def test_operands_come_from_the_question(train):
  for problem in train:
    numbers = set(re.findall(r"\d+", problem.question))
    for line in problem.rationale.splitlines():
      ((a, op, b, _, _),) = ANNOTATION.findall(line)
      assert b in numbers


def test_config_knobs_are_honoured():
  cfg = SyntheticConfig(num_steps=(3, 3), num_distractors=(2, 2), operations="+", seed=1)
  for problem in generate_problems(cfg, 50, "test"):
    assert problem.rationale.count("\n") == 2
    assert set(re.findall(r"[+\-*](?=\d+=)", problem.rationale)) == {"+"}
    # Two distractors plus the start, three steps and the question.
    assert problem.question.count(".") + problem.question.count("?") == 1 + 2 + 3 + 1


def test_splits_are_disjoint(train, test_split):
  assert not {p.question for p in train} & {p.question for p in test_split}
  assert all(split_of_question(p.question) == "train" for p in train)
  assert all(p.problem_id.startswith("synthetic/test/") for p in test_split)
  assert len({p.question for p in train}) == len(train)


def test_bad_configs_are_rejected():
  with pytest.raises(SyntheticConfigError, match="operations='/'"):
    generate_problems(SyntheticConfig(operations="/"), 1, "train")
  with pytest.raises(SyntheticConfigError, match="num_steps"):
    generate_problems(SyntheticConfig(num_steps=(3, 2)), 1, "train")
  with pytest.raises(SyntheticConfigError, match="split 'val'"):
    generate_problems(CFG, 1, "val")
  tiny = SyntheticConfig(num_steps=(1, 1), num_distractors=(0, 0), number_range=(2, 2), operations="+")
  with pytest.raises(SyntheticConfigError, match="distinct train problems"):
    generate_problems(tiny, 10_000, "train")


def test_jsonl_round_trip_through_load_gsm8k(tmp_path, test_split):
  path = write_gsm8k_jsonl(test_split, tmp_path / "test.jsonl")
  record = json.loads(path.read_text().splitlines()[0])
  assert record["answer"].endswith(f"\n#### {test_split[0].answer}")
  assert load_gsm8k(path, source="synthetic") == test_split
  assert load_task("synthetic", path) == test_split


def test_small_vocabulary(train):
  words = {w for p in train for w in re.findall(r"[A-Za-z]+", p.question + p.rationale)}
  assert words - set(NAMES) - set(OBJECTS) and len(words) <= 60


@pytest.fixture(scope="module")
def tokenizer_dir(tmp_path_factory, train):
  out_dir = tmp_path_factory.mktemp("tokenizer")
  build_tokenizer(out_dir, train)
  return out_dir


def test_tokenizer_round_trip(tokenizer_dir, train, test_split):
  tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir)
  exemplars = select_exemplars(train, 2, [], seed=0)
  texts = [format_exemplar(p, "cot") for p in test_split]
  texts += [
    build_prompt(p, style, exemplars) for p in test_split[:5] for style in ("cot", "subques", "questcot")
  ]
  texts += ["unseen words: Zoë's £3 \t tab  two  spaces\n\n"]
  for text in texts:
    ids = tokenizer(text)["input_ids"]
    assert ids[0] == tokenizer.bos_token_id
    assert tokenizer.decode(ids, skip_special_tokens=True) == text
    assert tokenizer.decode(tokenizer(text, add_special_tokens=False)["input_ids"]) == text


def test_tokenizer_layout_and_special_tokens(tokenizer_dir):
  assert {p.name for p in tokenizer_dir.iterdir()} >= {
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
  }
  tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir)
  ids = [tokenizer.convert_tokens_to_ids(t) for t in (PAD, BOS, EOS, UNK)]
  assert ids == [0, 1, 2, 3]
  assert (tokenizer.pad_token, tokenizer.bos_token, tokenizer.eos_token) == (PAD, BOS, EOS)
  assert 280 <= len(tokenizer) <= 512


def test_newline_is_one_token_and_the_only_one_containing_newline(tokenizer_dir):
  tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir)
  newline_ids = [i for i in range(len(tokenizer)) if "\n" in tokenizer.decode([i])]
  assert len(newline_ids) == 1
  assert tokenizer.decode(newline_ids) == "\n"
  assert tokenizer("\n", add_special_tokens=False)["input_ids"] == newline_ids
  assert tokenizer("a.\n\nQ", add_special_tokens=False)["input_ids"].count(newline_ids[0]) == 2


def test_digits_are_single_tokens(tokenizer_dir):
  tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir)
  for token_id in range(len(tokenizer)):
    text = tokenizer.decode([token_id])
    assert sum(c.isdigit() for c in text) <= 1, text
  ids = tokenizer(" <<12+345=357>>357", add_special_tokens=False)["input_ids"]
  assert tokenizer.convert_ids_to_tokens(ids)[:3] == ["\u0120<<", "1", "2"]


def test_tokenizer_is_deterministic(tmp_path, tokenizer_dir, train):
  build_tokenizer(tmp_path / "again", train)
  assert (tmp_path / "again" / "tokenizer.json").read_bytes() == (
    tokenizer_dir / "tokenizer.json"
  ).read_bytes()

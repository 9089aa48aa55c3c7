"""The embedded synthetic task and its tokenizer."""

import hashlib
import json
import re

import pytest
from transformers import AutoTokenizer

from configs import demo as demo_config
from configs import train_teacher
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


# --- hard_step: where the hard decision sits -------------------------------------------------------

# The demo models' generator settings, 3 steps and no other distractors: the competitor is the only one.
HARD = dict(train_teacher.SYNTHETIC, num_steps=(3, 3), num_distractors=(0, 0))
# sha256 of the first 100 problems (id, question, rationale, answer) per split, taken before hard_step
# existed: the knob's default must leave every existing seed's problems byte-identical.
PINNED = {
  ("seed3", "train"): "eb9911a9d027588a3584b806aae981cc2bfb9577d55721822c120350047ffc02",
  ("seed3", "test"): "d304598a62f88c2e954d60af8b7fe7d739cb6c169d96210e1712a637d16cfa98",
  ("demo", "train"): "7528410336c07b7eacf1ba1e2c874d6a7ea3838425a1e881e6418f0a4a6c8a64",
  ("demo", "test"): "0d1184ca8f6b6c22f869b67d7177fe23690d2d0b72508ace94103bf9f669ff92",
}
OPERATION_WORDS = {
  "+": ("more", "buys", "finds", "gets"),
  "-": ("fewer", "gives", "loses", "sells"),
  "*": ("times",),
}


@pytest.mark.parametrize("name,split", sorted(PINNED))
def test_default_hard_step_keeps_problems_byte_identical(name, split):
  cfg = SyntheticConfig(seed=3) if name == "seed3" else SyntheticConfig(**train_teacher.SYNTHETIC)
  assert cfg.hard_step == 0
  problems = generate_problems(cfg, 100, split)
  text = json.dumps([[p.problem_id, p.question, p.rationale, p.answer] for p in problems])
  assert hashlib.sha256(text.encode()).hexdigest() == PINNED[(name, split)]


def test_hard_step_hand_checked_examples():
  """First test problems, read by hand: the competitor sits right before the hero's step-k sentence."""
  first = {k: generate_problems(SyntheticConfig(**HARD, hard_step=k), 1, "test")[0] for k in (1, 2, 3)}
  # Step 1 adds 5 from Ben; Eva (not the hero) "buys 4 more" just before it.
  assert first[1].question == (
    "Cara has 2 stamps. Eva buys 4 more stamps. Cara gets 5 stamps from Ben. Cara now has 3 times as "
    "many stamps as before. Cara gets 6 stamps from Ben. How many stamps does Cara have now?"
  )
  assert first[1].rationale.splitlines()[0] == "Cara has 2 + 5 = <<2+5=7>>7 stamps."
  # Step 2 multiplies by 3; Dan's "2 times as many" competes with it.
  assert first[2].question == (
    "Ben has 4 books. Ben now has 2 times as many books as before. Dan now has 2 times as many books as "
    "before. Ben now has 3 times as many books as before. Ben loses 8 books. How many books does Ben have now?"
  )
  assert first[2].rationale.splitlines()[1] == "Ben has 8 * 3 = <<8*3=24>>24 books."
  # Step 3 adds 6; Ivy's "finds 8 more" comes right before it.
  assert first[3].question == (
    "Ben has 9 coins. Eva has 3 fewer coins than Ben. Eva gives 3 coins to Cara. Ivy finds 8 more coins. "
    "Eva finds 6 more coins. How many coins does Eva have now?"
  )
  assert first[3].answer == "9"


def _sentences(question):
  return re.split(r"(?<=[.?]) ", question)


def _operation_of(sentence):
  ((op,),) = [[o] for o, words in OPERATION_WORDS.items() if any(f" {w} " in sentence for w in words)]
  return op


@pytest.mark.parametrize("k", [1, 2, 3])
@pytest.mark.parametrize("distractors", [(0, 0), (0, 2)])
@pytest.mark.parametrize("phrasing", ["step", "count"])
def test_hard_step_puts_a_competing_quantity_at_step_k(k, distractors, phrasing):
  cfg = SyntheticConfig(**dict(HARD, num_distractors=distractors), hard_step=k, hard_phrasing=phrasing)
  for problem in generate_problems(cfg, 100, "test"):
    hero, obj = re.search(r"How many (\w+) does (\w+) have now\?$", problem.question).group(2, 1)
    sentences = _sentences(problem.question)
    # Sentence 0 is the start; the hero's own later sentences (not "also has") are steps 1..3 in order.
    steps = [i for i, s in enumerate(sentences[1:], 1) if s.startswith(f"{hero} ") and " also has " not in s]
    assert len(steps) == 3, problem.question
    at = steps[k - 1]
    competitor, step = sentences[at - 1], sentences[at]
    ((_, op, operand, _, _),) = ANNOTATION.findall(problem.rationale.splitlines()[k - 1])
    assert _operation_of(step) == op and operand in step.split()
    # Same object, another person, another number from the operand's own range.
    assert not competitor.startswith(f"{hero} ") and f" {obj}" in competitor
    (number,) = re.findall(r"\d+", competitor)
    low, high = HARD["multiplier_range"] if op == "*" else HARD["number_range"]
    assert number != operand and low <= int(number) <= high
    if phrasing == "count":
      assert re.fullmatch(rf"[A-Z][a-z]+ has {number} {obj}\.", competitor)
    else:  # the step's own operation, and for a comparison start the same rival
      assert _operation_of(competitor) == op
      if " than " in step:
        assert competitor.split(" than ")[1] == step.split(" than ")[1]
    if distractors == (0, 0):
      assert len(sentences) == 1 + 3 + 1 + 1  # start, steps, the competitor, the question
    assert str(evaluate_chain(problem)) == problem.answer


def test_hard_step_must_be_a_step_every_problem_has():
  for bad in (-1, 4):
    with pytest.raises(SyntheticConfigError, match=f"hard_step={bad}"):
      generate_problems(SyntheticConfig(**HARD, hard_step=bad), 1, "test")
  # Problems of 2-4 steps: step 3 is missing from the 2-step ones.
  with pytest.raises(SyntheticConfigError, match=r"hard_step=3: need an int in \[0, 2\]"):
    generate_problems(SyntheticConfig(num_steps=(2, 4), hard_step=3), 1, "test")
  with pytest.raises(SyntheticConfigError, match="hard_step=1.5"):
    SyntheticConfig(hard_step=1.5).validate()
  with pytest.raises(SyntheticConfigError, match="hard_phrasing='verb'"):
    SyntheticConfig(hard_step=1, hard_phrasing="verb").validate()
  assert len(generate_problems(SyntheticConfig(num_steps=(2, 4), hard_step=2), 5, "test")) == 5


def test_hard_phrasing_count_hand_checked_example():
  (problem,) = generate_problems(SyntheticConfig(**HARD, hard_step=2, hard_phrasing="count"), 1, "test")
  # Step 2 multiplies by 2; Gus's count of 3 pears sits right before it.
  assert problem.question == (
    "Ava has 5 pears. Ava sells 2 pears. Gus has 3 pears. Ava now has 2 times as many pears as before. "
    "Ava loses 3 pears. How many pears does Ava have now?"
  )
  assert problem.rationale.splitlines()[1] == "Ava has 3 * 2 = <<3*2=6>>6 pears."


def test_demo_variants_are_three_step_hard_step_sweeps():
  dirs = set()
  for k, phrasing in demo_config.HARD_VARIANTS:
    c = demo_config.hard_step_config(k, phrasing)
    dirs.add(c.output_dir)
    assert c.output_dir.startswith(f"runs/demo/hard_step_{k}") and c.task.synthetic.hard_step == k
    assert tuple(c.policies) == ("never", "step:1", "step:2", "step:3")
    assert [s.name for s in c.students] == ["student-small", "student-tiny"]
    assert all(not s.get("checkpoints") for s in c.students)
    cfg = SyntheticConfig(
      **{key: tuple(v) if isinstance(v, tuple) else v for key, v in c.task.synthetic.items()}
    )
    problems = generate_problems(cfg, c.task.num_problems, "test")
    assert all(p.rationale.count("\n") == 2 for p in problems)
  assert len(dirs) == len(demo_config.HARD_VARIANTS)
  assert demo_config.get_config().task.synthetic.get("hard_step", 0) == 0

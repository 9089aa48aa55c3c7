"""`python -m decode.generate`: the JSON contract and clear errors for bad input."""

import json
import subprocess
import sys

import pytest
import tiny_models


def _run(*args):
  return subprocess.run(
    [sys.executable, "-m", "decode.generate", *map(str, args)], capture_output=True, text=True
  )


def test_batched_prompts_with_teacher(pair_dir, tmp_path):
  f = tmp_path / "p.jsonl"
  f.write_text("\n".join(json.dumps({"prompt": p}) for p in ["what is 3+4?", "ab"]) + "\n")
  r = _run(
    "--student",
    pair_dir / "s",
    "--teacher",
    pair_dir / "t",
    "--prompts",
    f,
    "--policy",
    "step:1",
    "--max-new-tokens",
    12,
    "--step-delimiter",
    "y",
  )
  assert r.returncode == 0, r.stderr
  rows = [json.loads(line) for line in r.stdout.splitlines()]
  assert len(rows) == 2
  for row in rows:
    for key in ("completion", "token_ids", "authors", "student_tokens", "teacher_tokens"):
      assert key in row
    assert len(row["token_ids"]) == len(row["authors"]) == row["student_tokens"] + row["teacher_tokens"]
    assert row["authors"][0] == 1  # step:1: the teacher starts


def test_single_prompt_student_only(pair_dir):
  r = _run("--student", pair_dir / "s", "--prompt", "ab", "--max-new-tokens", 5)
  assert r.returncode == 0, r.stderr
  row = json.loads(r.stdout)
  assert row["teacher_tokens"] == 0 and set(row["authors"]) == {0}


def test_stop_texts_end_a_row_where_its_text_holds_one(pair_dir):
  """--stop: the row is the unstopped row cut just after the stop text (escapes read), answer_step set."""
  plain = json.loads(
    _run("--student", pair_dir / "s", "--prompt", "hello there. x", "--max-new-tokens", 24).stdout
  )
  text = plain["completion"]
  stop = text[8:10]
  r = _run(
    "--student",
    pair_dir / "s",
    "--prompt",
    "hello there. x",
    "--max-new-tokens",
    24,
    "--stop",
    stop.replace("\n", "\\n"),
  )
  assert r.returncode == 0, r.stderr
  row = json.loads(r.stdout)
  assert row["completion"] == text[: text.index(stop) + len(stop)]
  assert row["answer_step"] is not None and plain["answer_step"] is None
  bad = _run("--student", pair_dir / "s", "--prompt", "ab", "--answer-marker", "Answer is")
  assert bad.returncode == 2 and "must be lowercase" in bad.stderr


@pytest.mark.parametrize(
  "args,message",
  [
    (["--policy", "sometimes"], "unknown policy"),
    (["--policy", "step:1"], "needs a teacher"),
    (["--max-new-tokens", "0"], "must be positive"),
    (["--max-new-tokens", "-3"], "must be positive"),
  ],
)
def test_bad_arguments(pair_dir, args, message):
  r = _run("--student", pair_dir / "s", "--prompt", "ab", *args)
  assert r.returncode == 2 and message in r.stderr and "Traceback" not in r.stderr, r.stderr


def test_prompt_longer_than_context(pair_dir):
  r = _run("--student", pair_dir / "s", "--prompt", "a" * 1100, "--max-new-tokens", 4)
  assert r.returncode == 2 and "exceeds the models' context" in r.stderr and "Traceback" not in r.stderr


def test_tokenizer_mismatch_goes_through_the_text_bridge(pair_dir, tmp_path):
  import transformers

  other = tmp_path / "other"
  tiny_models.make_hf_model(other, "llama", seed=3, tokenizer=False)
  tok = transformers.AutoTokenizer.from_pretrained(str(pair_dir / "s"))
  tok.add_tokens(["<extra>"])
  tok.save_pretrained(str(other))
  r = _run(
    "--student",
    pair_dir / "s",
    "--teacher",
    other,
    "--prompt",
    "ab",
    "--policy",
    "step:1",
    "--max-new-tokens",
    6,
  )
  assert r.returncode == 0, r.stderr
  row = json.loads(r.stdout)
  assert row["authors"][0] == 1 and row["round_trips"] == 1 and row["teacher_read"] > 0


def test_bad_prompts_file(pair_dir, tmp_path):
  f = tmp_path / "p.jsonl"
  f.write_text('{"prompt": "ok"}\n{"text": "no prompt"}\n')
  r = _run("--student", pair_dir / "s", "--prompts", f)
  assert r.returncode == 2 and "p.jsonl:2" in r.stderr


@pytest.mark.parametrize(
  "line,message",
  [
    ('{"prompt": "b", "policy": "sometimes"}', "p.jsonl:3: unknown policy"),
    ('{"prompt": "b", "policy": "step:1"}', "p.jsonl:3: policy 'step:1' needs a teacher"),
    ('{"prompt": "b", "policy": 2}', 'p.jsonl:3: "policy" must be a string'),
  ],
)
def test_bad_policy_in_prompts_file_names_the_line(pair_dir, tmp_path, line, message):
  f = tmp_path / "p.jsonl"
  f.write_text('{"prompt": "a"}\n\n' + line + "\n")  # the blank line 2 still counts
  r = _run("--student", pair_dir / "s", "--prompts", f)
  assert r.returncode == 2 and message in r.stderr and "Traceback" not in r.stderr, r.stderr
  assert r.stdout == ""

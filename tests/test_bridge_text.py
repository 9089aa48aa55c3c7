"""The text bridge's text, faithful and never silent, with tokenizers whose pieces read differently alone.

A SentencePiece-style tokenizer (Metaspace: a piece decoded alone drops its leading space) and a
WordPiece-decoder one (tokens joined with spaces) on the student's side, and the word-level pieces of
the other bridge tests: the teacher must read exactly the whole text (prompt + completion decoded
together, not glued), the student must receive exactly the teacher's text, and text the student's
tokenizer can only write as its unknown token ends the row with an error, as does a teacher that
adds nothing twice in one step.
"""

import random

import bridge_models
import pytest

from decode.api import DecodeRequest
from decode.bridge.decoder import BridgeDecoder, continuation_text, encode_continuation
from decode.bridge.teachers import Completion
from experiments.bench.models import fast_tokenizer
from model.hf_import import load_model

SPECIALS = bridge_models.SPECIALS


def metaspace_tokenizer():
  """64 tokens: '▁wN' (a word after a space), 'wN' (after a newline), '\\n', '▁'."""
  from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers

  pieces = [f"▁w{i}" for i in range(30)] + [f"w{i}" for i in range(28)] + ["\n", "▁"]
  tok = Tokenizer(models.WordLevel({t: i for i, t in enumerate(SPECIALS + pieces)}, unk_token="<unk>"))
  tok.pre_tokenizer = pre_tokenizers.Sequence(
    [
      pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="first"),
      pre_tokenizers.Split(Regex("▁?[^▁\n]+|\n|▁"), behavior="isolated"),
    ]
  )
  tok.decoder = decoders.Metaspace(replacement="▁", prepend_scheme="first")
  return fast_tokenizer(tok)


def wordpiece_decoder_tokenizer():
  """64 tokens: words and '\\n', split at spaces; decoding joins tokens with one space."""
  from tokenizers import Tokenizer, decoders, models, pre_tokenizers

  pieces = [f"w{i}" for i in range(59)] + ["\n"]
  tok = Tokenizer(models.WordLevel({t: i for i, t in enumerate(SPECIALS + pieces)}, unk_token="<unk>"))
  tok.pre_tokenizer = pre_tokenizers.Sequence(
    [pre_tokenizers.Split(" ", behavior="removed"), pre_tokenizers.Split("\n", behavior="isolated")]
  )
  tok.decoder = decoders.WordPiece(prefix="##", cleanup=False)
  return fast_tokenizer(tok)


TOKENIZERS = {"metaspace": metaspace_tokenizer, "wordpiece_decoder": wordpiece_decoder_tokenizer}


def _natural(rng) -> str:
  """Words (of both tokenizers' 28) after spaces and newlines, as a model writes them."""
  out = f"w{rng.randrange(28)}"
  for _ in range(rng.randrange(1, 9)):
    out += rng.choice([" ", " ", " ", "\n"]) + f"w{rng.randrange(28)}"
  return out + rng.choice(["", "\n"])


def _split(tok, rng):
  """(context, new) ids: a natural text's tokens cut at a random point."""
  ids = tok(_natural(rng), add_special_tokens=False)["input_ids"]
  assert tok.unk_token_id not in ids
  cut = rng.randrange(1, len(ids))
  return ids[:cut], ids[cut:]


@pytest.mark.parametrize("name", TOKENIZERS)
def test_continuation_text_is_the_whole_text_less_its_context(name):
  tok, rng = TOKENIZERS[name](), random.Random(0)
  glued = 0
  for _ in range(200):
    context, new = _split(tok, rng)
    whole = tok.decode(context + new)
    assert tok.decode(context) + continuation_text(tok, context, new) == whole
    glued += tok.decode(context) + tok.decode(new) != whole  # what decoding the piece alone gives
  assert glued > 20  # these tokenizers do glue prompt and completion when decoded apart


@pytest.mark.parametrize("name", TOKENIZERS)
def test_the_student_receives_exactly_the_teachers_text(name):
  """Against the brute force: the whole text decoded after appending == the text before + the text."""
  tok, rng = TOKENIZERS[name](), random.Random(1)
  for _ in range(200):
    context, new = _split(tok, rng)
    text = continuation_text(tok, context, new)
    ids = encode_continuation(tok, context, text)
    assert tok.decode(context + ids) == tok.decode(context) + text, (context, text)


class RecordingTeacher:
  """A TextTeacher that answers every request with `text` (then its stop string) and keeps the prompts."""

  compiles = 0

  def __init__(self, text: str):
    self.text, self.prompts = text, []

  def request_text(self, request):
    return request.prompt

  def complete(self, requests):
    self.prompts += [r.prompt for r in requests]
    return [Completion(self.text, "stop", "\n", len(r.prompt.split()), 2) for r in requests]


@pytest.fixture(scope="module")
def students(tmp_path_factory):
  out = {}
  for name, make in TOKENIZERS.items():
    d = tmp_path_factory.mktemp(name)
    bridge_models.make_model(d, seed=31, hidden=32, layers=2)
    make().save_pretrained(str(d))
    out[name] = load_model(d)
  return out


@pytest.mark.parametrize("name", TOKENIZERS)
def test_the_teacher_reads_the_whole_text(students, name):
  """Rows continue from the student's step 1 (a prefix); the teacher writes step 2 and must read
  prompt + step 1 as the whole text decodes, not the two decoded apart and glued."""
  tok = students[name].tokenizer
  texts, steps = ["w5 w9 w13", "w1 w8", "w11 w12 w3"], [" w3 w4\n", "\nw7 w6\n", " w2\n"]
  prompts = [tok(t)["input_ids"] for t in texts]
  prefixes = [tok(t + s)["input_ids"][len(p) :] for t, s, p in zip(texts, steps, prompts)]
  teacher = RecordingTeacher(" w20 w21")
  rows = BridgeDecoder(students[name], teacher, step_delimiter="\n").generate(
    DecodeRequest(prompts, "step:2", 12, prefixes=prefixes, prefix_steps=[1] * 3, texts=texts)
  )
  # The brute force: the whole text decoded, less the prompt's own decoding, after the prompt text.
  whole = [t + tok.decode(p + q)[len(tok.decode(p)) :] for t, p, q in zip(texts, prompts, prefixes)]
  assert teacher.prompts == whole  # one boundary, all rows together
  assert any(t + tok.decode(q) != w for t, q, w in zip(texts, prefixes, whole))  # glued would differ
  for w, p, row in zip(whole, prompts, rows):
    assert row.error is None and row.round_trips == 1
    if name == "metaspace":  # its pieces say the teacher's text exactly: the row's text grows by it
      assert tok.decode(p + row.token_ids).startswith(w + " w20 w21\n")


@pytest.mark.parametrize("name", TOKENIZERS)
def test_text_the_student_cannot_write_ends_the_row(students, name):
  """A delimiter inside the teacher's words cuts them; the stub answers a piece no student token
  holds: the row ends with an error after one round trip, never appending unknown tokens."""
  student = students[name]
  tok = student.tokenizer
  rows = BridgeDecoder(student, RecordingTeacher(" zz9"), step_delimiter="\n").generate(
    DecodeRequest([tok("w5 w9")["input_ids"]], "step:1", 12, texts=["w5 w9"])
  )
  (row,) = rows
  assert row.error is not None and "unknown token" in row.error
  assert row.round_trips == 1 and tok.unk_token_id not in row.token_ids


def test_a_teacher_that_adds_nothing_twice_ends_the_row(students):
  student = students["metaspace"]
  tok = student.tokenizer
  teacher = RecordingTeacher("")  # the stop string before any text, every time
  (row,) = BridgeDecoder(student, teacher, step_delimiter="\n").generate(
    DecodeRequest([tok("w5 w9")["input_ids"]], "step:1", 12, texts=["w5 w9"])
  )
  assert row.error == "the teacher added no text twice in one step" and row.round_trips == 2

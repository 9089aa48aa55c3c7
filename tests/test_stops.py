"""Stop at the answer: the character rule, its token table, and rows the loop ends there.

Oracles: hand-cut texts for the rule; the answer extraction (cutting at the stop never changes a
prediction of the hand-labelled completions table); the character automaton run over the decoded
text for the token table and for the loop's rows (the loop's row must be the unstopped row cut
where the automaton first completes, in plain and fork mode alike).
"""

import random

import numpy as np
import pytest
from guided_cases import PROMPTS
from test_answers_table import _BASE_FEW_SHOT, TABLE

from decode.api import DecodeRequest
from decode.core.advance import step_boundary
from decode.core.loop import counting_compiles
from decode.core.stop_rule import StopRule
from decode.core.stops import CharMachine, build_stop_table
from decode.core.vocab import token_surfaces
from decode.errors import DecodeInputError
from decode.host.guided import GuidedDecoder
from experiments.tasks.answers import extract_answer
from experiments.tasks.prompts import stop_rule

COT = stop_rule("cot")


@pytest.mark.parametrize(
  "text, cut",
  [
    ("12 + 6 = 18\n#### 18\n\nQuestion: more", "12 + 6 = 18\n#### 18\n"),
    ("#### 18", None),  # the line has not ended: the row goes on (EOS or a limit ends it)
    ("#### 1. Count the eggs\n16 - 3 = 13\n#### 13\nmore", "#### 1. Count the eggs\n16 - 3 = 13\n#### 13\n"),
    ("#### 1.5 kg\nmore", "#### 1.5 kg\n"),  # a decimal is not a heading
    ("The answer is **18**.\nI hope", "The answer is **18**.\n"),
    ("THE ANSWER IS 7\nx", "THE ANSWER IS 7\n"),  # markers are matched without case
    ("the answer is not clear\nso 5\nok\n\nQ", "the answer is not clear\nso 5\nok\n\n"),
    (
      "The final answer is $\\boxed{18}$. I hope it is correct.\nx",
      "The final answer is $\\boxed{18}$. I hope it is correct.\n",
    ),
    ("The answer is 18. Then more\nx", "The answer is 18. Then more\n"),  # only '####' opens headings
    ("5 apples\nQuestion: new", "5 apples\nQuestion:"),
    ("5 apples\n\nmore", "5 apples\n\n"),
    ("a question: x\n", None),  # stop texts are case-sensitive
  ],
)
def test_the_character_rule_cuts_where_the_answer_is_complete(text, cut):
  end = CharMachine(COT).stop_end(text)
  assert (None if end is None else text[:end]) == cut


@pytest.mark.parametrize(
  "style, completion, prediction",
  [pytest.param("cot", *p.values[:2], id=f"cot-{p.id}") for p in _BASE_FEW_SHOT]
  + [pytest.param("chat", *p.values[:2], id=f"chat-{p.id}") for p in TABLE],
)
def test_stopping_never_changes_a_prediction(style, completion, prediction):
  """Every hand-labelled completion reads the same answer from the text the loop would keep: base
  models' few-shot completions under the few-shot rule, every style under the chat rule (instruct
  models write blank lines inside a solution, so only the few-shot rule stops at one)."""
  end = CharMachine(stop_rule(style)).stop_end(completion)
  kept = completion if end is None else completion[:end]
  assert extract_answer(kept) == prediction


def test_the_chat_rule_ends_at_the_turn_end_the_tokenizer_has():
  class Tok:
    def get_vocab(self):
      return {"<|im_end|>": 5, "a": 1}

  rule = stop_rule("chat", Tok())
  assert rule.texts == ("<|im_end|>",)  # no blank line: instruct models write them between paragraphs
  assert stop_rule("cot").texts == ("Question:", "\n\n")


@pytest.mark.parametrize(
  "kw",
  [
    dict(texts="Question:"),  # a string, not a tuple of them
    dict(texts=("",)),
    dict(answer_markers=("Answer is",)),  # markers are lowercase
    dict(answer_markers=("x1",)),
    dict(answer_markers=("a",), heading_markers=("b",)),
  ],
)
def test_a_malformed_rule_is_refused(kw):
  with pytest.raises(DecodeInputError):
    StopRule(**kw)


PIECES = [
  "####", "#", "##", " ", "1", "8", "18", ".", ". C", "ount", "\n", "\n\n", "Quest", "ion", ":", "Question:",
  "The", " answer", " is", "answer is", " **", "**", "boxed{", "}", "$", "x", "y\nQu", "estion", "e", " 5",
  ")", "a\nb", "é", "\t",
]  # fmt: skip


def test_the_token_table_agrees_with_the_character_rule_at_every_token():
  """Token-level states accept exactly when the automaton over the decoded text has accepted,
  whatever the token boundaries (stop texts split over tokens, or inside one)."""
  table = build_stop_table(COT, PIECES)
  machine = CharMachine(COT)
  rng = random.Random(0)
  for _ in range(400):
    ids = [rng.randrange(len(PIECES)) for _ in range(rng.randrange(1, 14))]
    state, text = 0, ""
    for t in ids:
      state, text = int(table.step(state, t)), text + PIECES[t]
      assert bool(table.accepting[state]) == (machine.stop_end(text) is not None), repr(text)


def test_the_table_groups_tokens_and_pads_to_fixed_shapes():
  surfaces = [f"w{i}" for i in range(5000)] + PIECES
  table = build_stop_table(COT, surfaces)
  assert table.token_class.shape == (len(surfaces),)
  distinct = len(np.unique(table.token_class))
  assert distinct < 200  # 5000 words move every state alike: a few classes, not one per token
  S, C = table.next_state.shape
  assert S % 16 == 0 and C % 64 == 0 and C >= distinct


# --- the loop -------------------------------------------------------------------------------------

MAX_NEW = 40


@pytest.fixture(scope="module")
def runs(pair):
  """A decoder without a stop rule and its rows: the unstopped text every stopped row is cut from."""
  s, t = pair
  plain = GuidedDecoder(s, t)
  ids = plain.encode(PROMPTS)
  kw = dict(max_new_tokens=MAX_NEW, max_len=128, batch_size=4)
  policies = ["never", "step:1", "step:2"]
  rows = {p: plain.generate(DecodeRequest(ids, p, **kw)) for p in policies}
  return ids, kw, rows


def _rule_from(rows) -> StopRule:
  """Stop texts the rows reach in their middles, and markers these random models write ('=' and '#'
  followed by a digit, some lines later ended): both kinds of stop occur."""
  texts = {
    r.completion[len(r.completion) // 2 :][:2] for rs in rows.values() for r in rs if len(r.completion) > 8
  }
  return StopRule(texts=tuple(sorted(texts)), answer_markers=("=", "#"), heading_markers=("#",))


def _steps_completed(ids, masks) -> int:
  """Steps that `ids` complete, by the loop's step-end rule."""
  ends, content = 0, False
  for t in ids:
    end, content = step_boundary(content, masks.content[t], masks.delimiter[t])
    if end:
      ends, content = ends + 1, False
  return ends


def _expected(row, decoder):
  """The unstopped row cut where the automaton first completes over its decoded tokens, and the
  steps completed there (None: it never completes)."""
  surfaces = token_surfaces(decoder.student.tokenizer)
  machine, state = CharMachine(decoder.options.stop), None
  for k, t in enumerate(row.token_ids):
    state = machine.run(surfaces[t], state)
    if state == "done":
      ids = row.token_ids[: k + 1]
      return ids, _steps_completed(ids, decoder.masks)
  return row.token_ids, None


def test_rows_stop_where_their_answer_is_complete(pair, runs):
  ids, kw, rows = runs
  s, t = pair
  rule = _rule_from(rows)
  stopping = GuidedDecoder(s, t, stop=rule)
  with counting_compiles() as built:
    got = {p: stopping.generate(DecodeRequest(ids, p, **kw)) for p in rows}
  assert built[0] == 1  # one program for every policy
  stopped = 0
  for p, plain_rows in rows.items():
    for plain_row, row in zip(plain_rows, got[p]):
      want_ids, want_step = _expected(plain_row, stopping)
      assert row.token_ids == want_ids, p
      assert row.authors == plain_row.authors[: len(want_ids)]
      assert row.answer_step == want_step
      if want_step is not None:
        stopped += 1
        assert row.num_steps == want_step
        # Uncertainty of the steps up to the answer only (a begun "Question:" step is not counted).
        assert len(row.step_uncertainty) == (want_step if p == "never" else 0)
  assert stopped >= 3  # the rule reached rows of several policies


def test_a_forked_row_carries_its_prefix_state(pair, runs):
  """Fork mode: a row continued from a prefix of the student's run stops where the plain row does,
  and a prefix that already completes the answer ends the row at once."""
  ids, kw, rows = runs
  s, t = pair
  stopping = GuidedDecoder(s, t, stop=_rule_from(rows))
  plain = stopping.generate(DecodeRequest(ids, "step:2", **kw))
  base = stopping.generate(DecodeRequest(ids, "never", **kw))  # the student's own (stopped) runs
  # Each prefix ends before step 2 (where the teacher first acts) and, where the run is longer, after
  # 11 tokens (inside or past its first stop text: its state is carried, not restarted), before its last.
  prefixes = [b.token_ids[: min(11, (b.step_ids + [2]).index(2), len(b.token_ids) - 1)] for b in base]
  steps = [_steps_completed(q, stopping.masks) for q in prefixes]
  forked = stopping.generate(DecodeRequest(ids, "step:2", **kw, prefixes=prefixes, prefix_steps=steps))
  for p_row, f_row in zip(plain, forked):
    assert f_row.token_ids == p_row.token_ids
    assert f_row.answer_step == p_row.answer_step
  done = [r.token_ids for r in plain]
  again = stopping.generate(
    DecodeRequest(ids, "never", **kw, prefixes=done, prefix_steps=[r.num_steps for r in plain])
  )
  for p_row, a_row in zip(plain, again):
    if p_row.answer_step is not None:
      assert a_row.token_ids == p_row.token_ids  # nothing decoded after a completed answer

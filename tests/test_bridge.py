"""The text bridge in process: teacher-authored prefixes, the step rule across calls, triggers."""

import bridge_models
import numpy as np
import pytest
from bridge_reference import bridge_greedy

from decode.api import DecodeRequest, Sampling
from decode.bridge.decoder import BridgeDecoder
from decode.bridge.pairing import make_decoder
from decode.bridge.rows import BridgeRow, kept_tokens
from decode.bridge.teachers import Completion, CompletionRequest
from decode.core.policy import parse_policy
from decode.core.state import STUDENT, TEACHER
from decode.core.vocab import VocabMasks
from decode.errors import DecodeInputError, PolicyError
from decode.host.batching import build_inputs
from decode.host.guided import GuidedDecoder
from decode.serving.client import ServedTeacher
from model.hf_import import load_model

MAX_NEW = 16


@pytest.fixture(scope="module")
def models(tmp_path_factory):
  s_dir, t_dir = bridge_models.make_bridge_pair(tmp_path_factory.mktemp("bridge"))
  return load_model(s_dir), load_model(t_dir)


@pytest.fixture(scope="module")
def bridge(models):
  decoder = make_decoder(*models)
  assert isinstance(decoder, BridgeDecoder)  # same words, other ids: not one loop
  return decoder


def _run(decoder, policy):
  ids = decoder.encode(bridge_models.PROMPTS)
  return decoder.generate(
    DecodeRequest(ids, policy, max_new_tokens=MAX_NEW, texts=bridge_models.PROMPTS, batch_size=4)
  )


def test_prefix_authors_reach_the_loop(models):
  student = models[0]
  dec = GuidedDecoder(student)
  prompt, prefix = dec.encode(["w5 w9 ", "w13 w2\nw7 "])
  (row,) = dec.generate(
    DecodeRequest(
      [prompt], "never", max_new_tokens=6, prefixes=[prefix], prefix_steps=[1], prefix_authors=[[1, 1, 0]]
    )
  )
  assert row.token_ids[:3] == prefix and row.authors[:3] == [TEACHER, TEACHER, STUDENT]
  assert set(row.authors[3:]) == {STUDENT} and len(row.token_ids) == 6
  assert (row.teacher_tokens, row.student_tokens) == (2, 4)
  (plain,) = dec.generate(
    DecodeRequest([prompt], "never", max_new_tokens=6, prefixes=[prefix], prefix_steps=[1])
  )
  assert plain.authors[:3] == [STUDENT] * 3 and plain.token_ids == row.token_ids


@pytest.mark.parametrize("authors", [[[1, 1]], [[1, 2, 0]], [[0, 0, 0], [0]]])
def test_bad_prefix_authors_are_refused(models, authors):
  dec = GuidedDecoder(models[0])
  with pytest.raises(DecodeInputError, match="prefix_authors"):
    build_inputs(
      DecodeRequest([[5]], "never", 8, prefixes=[[6, 7, 8]], prefix_authors=authors),
      [parse_policy("never")],
      dec.masks,
      bucket=16,
      max_context=128,
    )


def test_same_tokenizer_keeps_the_one_loop(models):
  assert isinstance(make_decoder(models[0], models[0]), GuidedDecoder)
  assert isinstance(make_decoder(models[0]), GuidedDecoder)


@pytest.mark.parametrize("policy,steps,hint", [("step:1,n=2", {1, 2}, None), ("hint:2,m=2", {2}, 2)])
def test_matches_the_reference(models, bridge, policy, steps, hint):
  rows = _run(bridge, policy)
  for text, row in zip(bridge_models.PROMPTS, rows):
    ids, authors = bridge_greedy(*models, text, teacher_steps=steps, max_new=MAX_NEW, hint_tokens=hint)
    assert (row.token_ids, row.authors) == (ids, authors), text
    assert row.teacher_tokens == authors.count(TEACHER)  # one teacher token per student token here
    assert row.round_trips == len(row.intervention_steps)
    assert row.teacher_read > 0 or not row.round_trips
  assert any(TEACHER in r.authors and r.authors[-1] == STUDENT for r in rows)  # the student went on


@pytest.mark.parametrize(
  "trigger,window",
  [("entropy:0.0,budget=2", "step:1,n=2"), ("random:1.0,budget=1", "step:1"), ("maxprob:0.0", "never")],
)
def test_triggers_on_the_students_side(bridge, trigger, window):
  """A trigger that always fires (within its budget) is the window it spans; one that never fires is never."""
  fired, timed = _run(bridge, trigger), _run(bridge, window)
  for a, b in zip(fired, timed):
    assert (a.token_ids, a.authors, a.step_ids) == (b.token_ids, b.authors, b.step_ids)
    if parse_policy(trigger).records_uncertainty():  # uncertainty triggers; random:P draws its own
      assert len(a.step_uncertainty) >= 1 and all(len(m) == 3 for m in a.step_uncertainty)
    else:
      assert a.step_uncertainty == []


RULE_FIELDS = (
  "token_ids authors step_ids intervention_steps num_steps switches student_tokens teacher_tokens "
  "completion teacher_text error policy"
).split()


@pytest.fixture(scope="module")
def shared_tokenizer_pair(tmp_path_factory):
  """A student and a teacher with one tokenizer: the loop and the bridge can both decode them."""
  root = tmp_path_factory.mktemp("shared")
  s_dir, t_dir = root / "s", root / "t"
  bridge_models.make_model(s_dir, seed=21, hidden=32, layers=2)
  bridge_models.make_model(t_dir, seed=22, hidden=48, layers=3)
  for d in (s_dir, t_dir):
    bridge_models.make_tokenizer(d, list(range(bridge_models.WORDS)))
  return load_model(s_dir), load_model(t_dir)


def test_random_rows_record_the_same_fields_through_the_loop_and_the_bridge(shared_tokenizer_pair):
  """One policy rule: a pair sharing a tokenizer, decoded by the one loop and by the text bridge
  (teacher in text), gives random:P rows (and their never baseline) the same fields, including
  which step starts record an uncertainty (random rows: none; never rows: every one)."""
  from decode.bridge.teachers import LocalTeacher

  student, teacher = shared_tokenizer_pair
  loop, bridge = GuidedDecoder(student, teacher), BridgeDecoder(student, LocalTeacher(teacher))
  prompts = bridge_models.PROMPTS * 2
  policies = ["random:0.5"] * 6 + ["never", "random:0.5,budget=1"]
  request = DecodeRequest(
    loop.encode(prompts), policies, MAX_NEW, sampling=Sampling(seed=list(range(8))), texts=prompts
  )
  one, bridged = loop.generate(request), bridge.generate(request)
  assert any(r.intervention_steps for r in one) and any(not r.intervention_steps for r in one[:6])
  for a, b in zip(one, bridged):
    assert [getattr(a, f) for f in RULE_FIELDS] == [getattr(b, f) for f in RULE_FIELDS], a.policy
    assert len(a.step_uncertainty) == len(b.step_uncertainty), a.policy
    assert np.allclose(a.step_uncertainty, b.step_uncertainty, atol=1e-4), a.policy
    assert (a.step_uncertainty == []) == (a.policy != "never"), a.policy


def test_never_rows_record_step_uncertainty(bridge):
  for row in _run(bridge, "never"):
    starts = 1 + sum(a != b for a, b in zip(row.step_ids, row.step_ids[1:]))
    assert len(row.step_uncertainty) == starts and row.round_trips == 0 and row.teacher_tokens == 0


def test_uncalibrated_trigger_is_refused(bridge):
  with pytest.raises(PolicyError, match="calibrate"):
    _run(bridge, "entropy:q=0.3")


def test_a_delimiter_after_a_hint_ends_the_step():
  """The loop starts a call with an empty step; a continued step that holds text ends at its first
  delimiter, even one without text of its own: the student's tokens stand up to there."""
  # tokens: 0 "a" (text), 1 "\n" (delimiter alone), 2 "b\n" (text and delimiter)
  masks = VocabMasks(
    delimiter=np.array([False, True, True]), content=np.array([True, False, True]), eos=np.zeros(3, bool)
  )
  continued = BridgeRow(
    [9], "", parse_policy("hint:1,m=1"), Sampling(), [0], [1], [1], 0, at_start=False, content=True
  )
  assert kept_tokens(continued, [1, 0, 2], [], masks, None) == (1, False)
  fresh = BridgeRow([9], "", parse_policy("step:3"), Sampling(), [], [], [], 0)
  assert kept_tokens(fresh, [1, 0, 2, 0], [], masks, None) == (4, False)


class ScriptedTeacher:
  """Answers from a script, recording the prompts it was given."""

  def __init__(self, answers):
    self.answers, self.prompts = list(answers), []

  compiles = 0

  def request_text(self, request):
    return request.prompt

  def complete(self, requests):
    self.prompts += [r.prompt for r in requests]
    return [self.answers.pop(0) for _ in requests]


def test_teacher_text_edge_cases(pair):
  """A delimiter before any text does not end the teacher's step (one more round trip); the teacher's
  EOS ends the row, with the student's EOS token."""
  student = pair[0]  # character-level: a lone newline is a token
  teacher = ScriptedTeacher(
    [
      Completion("", "stop", "\n", 3, 1),
      Completion("ab", "stop", "\n", 4, 2),
      Completion("c ", "stop", None, 7, 2),
    ]
  )
  dec = BridgeDecoder(student, teacher)
  (row,) = dec.generate(DecodeRequest(dec.encode(["xy"]), "step:1,n=2", max_new_tokens=12, texts=["xy"]))
  tok = student.tokenizer
  assert teacher.prompts == ["xy", "xy\n", "xy\nab\n"]
  assert row.token_ids == tok("\nab\nc ", add_special_tokens=False)["input_ids"] + [tok.eos_token_id]
  assert set(row.authors) == {TEACHER} and row.step_ids == [1, 1, 1, 1, 2, 2, 2] and row.num_steps == 1
  assert (row.round_trips, row.teacher_tokens, row.teacher_read) == (3, 5, 14)
  assert row.completion == "\nab\nc " and row.intervention_steps == [1, 2]


@pytest.mark.parametrize(
  "choice,eos,stop",
  [
    ({"finish_reason": "stop", "stop_reason": None}, True, None),  # vLLM at EOS
    ({"finish_reason": "stop", "stop_reason": "\n"}, False, "\n"),  # vLLM at the stop string
    ({"finish_reason": "stop", "matched_stop": 2}, True, None),  # SGLang at an EOS token id
    ({"finish_reason": "stop"}, False, "\n"),  # says neither: the stop string asked for
    ({"finish_reason": "length", "stop_reason": None}, False, None),
  ],
)
def test_served_finish_reasons(choice, eos, stop):
  client = ServedTeacher("http://127.0.0.1:9/v1", model="m")  # a named model: nothing is contacted
  body = {"choices": [{"text": "w1 ", **choice}], "usage": {"prompt_tokens": 4, "completion_tokens": 1}}
  c = client._completion(body, CompletionRequest("p", max_tokens=3, stop=("\n",)))
  assert (c.at_eos, c.stop_reason, c.text, c.prompt_tokens, c.completion_tokens) == (eos, stop, "w1 ", 4, 1)


def test_cut_at_stop_counts_the_tokens_up_to_the_stop_string():
  """Against a brute-force reference that decodes every prefix: text, stop string and tokens used."""
  import random

  from decode.bridge.teachers import cut_at_stop

  class Chars:  # each id is a piece of text; decoding joins them
    pieces = ["a", "b", "\n", "c\n", "ab", "\n\n", " ", "x\ny"]

    def decode(self, ids, skip_special_tokens=True):
      return "".join(self.pieces[i] for i in ids)

  tok, rng = Chars(), random.Random(0)
  for _ in range(300):
    ids = [rng.randrange(len(Chars.pieces)) for _ in range(rng.randrange(1, 12))]
    stops = rng.choice([("\n",), ("b\n",), ("zz",), ("\n", "ab")])
    text = tok.decode(ids)
    hits = [(text.find(s), s) for s in stops if s in text]
    if not hits:
      assert cut_at_stop(tok, ids, stops) == (text, None, len(ids))
      continue
    at, stop = min(hits)
    used = next(j for j in range(1, len(ids) + 1) if stop in tok.decode(ids[:j]))
    assert cut_at_stop(tok, ids, stops) == (text[:at], stop, used), (ids, stops)


def test_rows_stop_at_the_answer_through_the_bridge_as_in_the_loop(shared_tokenizer_pair):
  """The stop rule through the text bridge: a pair sharing a tokenizer, by the loop and by the bridge,
  gives the same rows, cut where their answer is complete, including where a teacher's step of text
  goes on past the stop (the bridge drops the rest, as the loop never writes it)."""
  from decode.bridge.teachers import LocalTeacher
  from decode.core.stop_rule import StopRule

  student, teacher = shared_tokenizer_pair
  prompts = bridge_models.PROMPTS * 2
  policies = ["never", "step:1", "step:2", "always", "never", "step:1", "step:2", "random:0.5"]
  request = DecodeRequest(
    GuidedDecoder(student).encode(prompts),
    policies,
    MAX_NEW,
    sampling=Sampling(seed=list(range(8))),
    texts=prompts,
  )
  unstopped = GuidedDecoder(student, teacher).generate(request)
  # Stop texts the rows reach in their middles (one of them inside a teacher's step).
  texts = {r.completion[len(r.completion) // 2 :][:4] for r in unstopped if len(r.completion) > 12}
  rule = StopRule(texts=tuple(sorted(texts)))
  one = GuidedDecoder(student, teacher, stop=rule).generate(request)
  bridged = BridgeDecoder(student, LocalTeacher(teacher), stop=rule).generate(request)
  assert sum(r.answer_step is not None for r in one) >= 4
  assert any(r.answer_step is not None and r.authors[-1] == TEACHER for r in one)  # stopped in a teacher step
  for a, b in zip(one, bridged):
    assert (a.token_ids, a.authors, a.answer_step, a.num_steps) == (
      b.token_ids,
      b.authors,
      b.answer_step,
      b.num_steps,
    ), a.policy

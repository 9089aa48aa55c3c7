"""Clear errors from the guided loop's inputs: policies, generation arguments, a missing step delimiter."""

import pytest
from guided_cases import PROMPTS

from decode.api import DecodeRequest, Sampling
from decode.core.policy import parse_policy
from decode.errors import DecodeInputError
from decode.host.guided import GuidedDecoder


def test_policy_parsing_errors():
  from decode.errors import PolicyError

  for bad in ["sometimes", "step:0", "step:1,n=0", "random:1.5", "entropy:x", "step:2,q=1"]:
    with pytest.raises(PolicyError):
      parse_policy(bad)
  assert parse_policy("step:2,n=3").step_hi == 5
  assert parse_policy(" ALWAYS ").spec == "always"


def test_bad_generation_arguments_are_clear_errors(pair, decoder):
  s, t = pair
  with pytest.raises(DecodeInputError, match="teacher_chunk"):
    GuidedDecoder(s, t, teacher_chunk=0)
  ids = decoder.encode(PROMPTS)
  for kw, msg in [
    (dict(sampling=Sampling(top_p=0.0)), "top_p"),
    (dict(sampling=Sampling(top_k=-1)), "top_k"),
    (dict(sampling=Sampling(temperature=float("nan"))), "temperature"),
    (dict(sampling=Sampling(seed=[1, 2])), "seed has 2 entries"),
    (dict(max_new_tokens=0), "max_new_tokens"),
  ]:
    with pytest.raises(DecodeInputError, match=msg):
      decoder.generate(DecodeRequest(ids, "never", **{"max_new_tokens": 4, **kw}))


def test_step_delimiter_is_needed_only_where_steps_are(pair):
  """A tokenizer without the delimiter: student-only runs work; step policies and max_steps refuse."""
  from decode.errors import VocabError

  s, t = pair
  g = GuidedDecoder(s, t, step_delimiter="§")
  ids = g.encode(PROMPTS[:1])
  assert g.generate(DecodeRequest(ids, "never", max_new_tokens=4))[0].token_ids
  for kw in (dict(policies="step:1"), dict(policies="never", max_steps=2)):
    with pytest.raises(VocabError, match="no step can end"):
      g.generate(DecodeRequest(ids, max_new_tokens=4, **kw))

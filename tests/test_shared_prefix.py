"""A prompt prefix shared by every row, prefilled once at batch 1: rows equal runs without it."""

import pytest

from decode.api import DecodeRequest, Sampling
from decode.errors import DecodeInputError
from decode.host.guided import GuidedDecoder
from decode.host.prefix_caches import common_prefix

EXEMPLARS = "q: 12+30=? a: 12+30=42. #### 42\nq: 7*6=? a: 7*6=42. #### 42\n"  # the shared few-shot part
QUESTIONS = ["q: 3+4=? a:", "q: 9-2=? a:", "q: 5*5=? a:", "q: 8+1=? a:"]
POLICIES = ["never", "always", "step:1", "step:2", "hint:1,m=2", "entropy:2.0", "random:0.5", "step:2,n=2"]
KW = dict(max_new_tokens=20, max_len=128, batch_size=8)


@pytest.fixture(scope="module")
def decoder(pair):
  s, t = pair
  return GuidedDecoder(s, t, step_delimiter="e", teacher_chunk=8, prefill_chunk=16)


@pytest.fixture(scope="module")
def prompts(decoder):
  ids = decoder.encode([EXEMPLARS + q for q in QUESTIONS])
  return [ids[i % len(ids)] for i in range(len(POLICIES))]


def test_common_prefix_leaves_each_prompt_its_last_token():
  assert common_prefix([[1, 2, 3, 4], [1, 2, 3, 5], [1, 2, 3, 4, 6]]) == [1, 2, 3]
  assert common_prefix([[1, 2, 3], [1, 2, 3, 4]]) == [1, 2]  # the shorter prompt keeps its last token
  assert common_prefix([[5, 6], [7, 8]]) == []


@pytest.mark.parametrize("sampled", [False, True], ids=["greedy", "sampled"])
def test_rows_equal_a_run_without_the_shared_prefix(decoder, prompts, sampled):
  sampling = (
    dict(sampling=Sampling(temperature=1.0, top_p=0.9, seed=list(range(len(POLICIES))))) if sampled else {}
  )
  shared = decoder.shared_prefix(prompts, max_len=KW["max_len"])
  assert shared is not None and len(shared.tokens) >= 0.8 * min(len(p) for p in prompts)
  plain = decoder.generate(DecodeRequest(prompts, POLICIES, **KW, **sampling))
  cached = decoder.generate(DecodeRequest(prompts, POLICIES, **KW, **sampling, shared_prefix=shared))
  for a, b in zip(plain, cached):
    assert (a.token_ids, a.authors, a.step_ids) == (b.token_ids, b.authors, b.step_ids), a.policy
    # Neither model re-reads the prefix: the teacher's forwards skip exactly its positions.
    if a.teacher_tokens:
      assert a.teacher_prefilled - b.teacher_prefilled == len(shared.tokens), a.policy
  assert any(r.teacher_tokens for r in plain) and any(not r.teacher_tokens for r in plain)


def test_fork_prefill_and_cached_rows_start_after_the_shared_prefix(decoder, prompts):
  """Fork mode: the prefill of prompt + student run starts from the shared prefix; timings equal plain."""
  shared = decoder.shared_prefix(prompts, max_len=KW["max_len"])
  base = decoder.generate(DecodeRequest(prompts, "never", **KW))
  caches = decoder.prefill(
    prompts, [r.token_ids for r in base], max_len=128, batch_size=8, shared_prefix=shared
  )
  rows = [i for i, r in enumerate(base) if 2 in r.step_ids]
  assert rows
  prefixes = [base[i].token_ids[: base[i].step_ids.index(2)] for i in rows]
  sub = [prompts[i] for i in rows]
  plain = decoder.generate(DecodeRequest(sub, "step:2", **KW))
  forked = decoder.generate(
    DecodeRequest(
      sub, "step:2", **KW, prefixes=prefixes, prefix_steps=[1] * len(rows), caches=caches.rows(rows, 8)
    )
  )
  for a, b in zip(plain, forked):
    assert (a.token_ids, a.authors) == (b.token_ids, b.authors)


def test_one_compiled_loop_with_and_without_the_prefix(pair, prompts):
  """The shared prefix changes the caches a call starts from, not the loop's program."""
  s, t = pair
  g = GuidedDecoder(s, t, step_delimiter="e", teacher_chunk=8, prefill_chunk=16)
  shared = g.shared_prefix(prompts, max_len=KW["max_len"])
  g.generate(DecodeRequest(prompts, POLICIES, **KW))
  compiles = g.compiles
  g.generate(DecodeRequest(prompts, POLICIES, **KW, shared_prefix=shared))
  assert g.compiles == compiles


def test_prompts_that_do_not_start_with_the_prefix_are_refused(decoder, prompts):
  shared = decoder.shared_prefix(prompts, max_len=KW["max_len"])
  other = decoder.encode(["something else entirely, long enough to matter: " + QUESTIONS[0]])
  with pytest.raises(DecodeInputError, match="does not start with the shared prefix"):
    decoder.generate(DecodeRequest(other, "never", max_new_tokens=20, max_len=128, shared_prefix=shared))
  with pytest.raises(DecodeInputError, match="max_len=128"):
    decoder.generate(
      DecodeRequest(prompts[:1], "never", max_new_tokens=20, max_len=192, shared_prefix=shared)
    )
  assert decoder.shared_prefix([p[:10] for p in prompts], max_len=128) is None  # too short to be worth it

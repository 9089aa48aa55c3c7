"""The compiled guided loop against the plain host-side reference (tests/guided_reference.py): every
policy, mixed batches, one compilation, triggers, sampling and step limits. Teacher sub-batches,
forks and prefilled caches, and argument errors are in test_guided_sub_batches.py, test_guided_fork.py
and test_guided_errors.py."""

import jax
import pytest
from guided_cases import MAX_NEW, PROMPTS, reference

from decode.api import DecodeRequest, Sampling
from decode.host.guided import GuidedDecoder

ALL_STEPS = set(range(1, 1000))
CASES = {
  "never": dict(teacher_steps=set()),
  "always": dict(teacher_steps=ALL_STEPS),
  "step:1": dict(teacher_steps={1}),
  "step:2": dict(teacher_steps={2}),
  "step:3": dict(teacher_steps={3}),
  "step:2,n=2": dict(teacher_steps={2, 3}),
  "hint:1,m=3": dict(teacher_steps={1}, hint_tokens=3),
  "hint:2,m=1": dict(teacher_steps={2}, hint_tokens=1),
}


@pytest.mark.parametrize("spec", sorted(CASES))
def test_policy_matches_reference(pair, decoder, delimiter, spec):
  ids = decoder.encode(PROMPTS)
  results = decoder.generate(DecodeRequest(ids, spec, max_new_tokens=MAX_NEW))
  for prompt, r in zip(ids, results):
    want_ids, want_authors = reference(pair, decoder, delimiter, prompt, **CASES[spec])
    assert r.token_ids == want_ids
    assert r.authors == want_authors
    assert r.teacher_tokens == sum(want_authors) and r.student_tokens == len(want_authors) - sum(want_authors)


def test_reference_cases_exercise_switches(decoder):
  """Guard against a vacuous suite: the step policies must hand over and back somewhere."""
  res = decoder.generate(DecodeRequest(decoder.encode(PROMPTS), "step:2", max_new_tokens=MAX_NEW))
  assert any(r.switches >= 2 for r in res), [(r.completion, r.authors) for r in res]


def test_mixed_batch_equals_each_policy_alone(decoder):
  ids = decoder.encode(PROMPTS)
  specs = ["never", "step:1", "step:2,n=2", "always", "hint:2,m=1", "entropy:1.5"]
  prompts = [ids[i % len(ids)] for i in range(len(specs))]
  mixed = decoder.generate(
    DecodeRequest(prompts, specs, max_new_tokens=MAX_NEW, sampling=Sampling(seed=list(range(len(specs)))))
  )
  for i, (p, spec) in enumerate(zip(prompts, specs)):
    alone = decoder.generate(DecodeRequest([p], spec, max_new_tokens=MAX_NEW, sampling=Sampling(seed=i)))[0]
    assert (mixed[i].token_ids, mixed[i].authors) == (alone.token_ids, alone.authors), spec


def test_one_compilation_for_a_grid_of_policies(pair, delimiter):
  s, t = pair
  g = GuidedDecoder(s, t, step_delimiter=delimiter)
  ids = g.encode(PROMPTS)
  jax.clear_caches()  # count from a cold start (decoders with equal configs share compiled loops)
  grid = [
    "never",
    "always",
    "step:1",
    "step:2",
    "step:3",
    "step:1,n=2",
    "hint:1,m=2",
    "entropy:1.0",
    "entropy:2.5,budget=1",
    "maxprob:0.5",
    "margin:0.2",
    "random:0.3",
  ]
  for spec in grid:  # same bucketed shape every time -> the same compiled program
    g.generate(DecodeRequest(ids, spec, max_new_tokens=MAX_NEW, batch_size=4, max_len=64))
  g.generate(
    DecodeRequest(
      ids * 1 + ids[:1],
      grid[:4],
      max_new_tokens=MAX_NEW,
      batch_size=4,
      max_len=64,
      sampling=Sampling(
        temperature=[0.0, 0.7, 1.0, 0.5], top_k=[0, 5, 0, 3], top_p=[1.0, 0.9, 0.8, 1.0], seed=[1, 2, 3, 4]
      ),
    )
  )
  assert g.compiles == 1


def test_teacher_never_runs_when_no_row_needs_it(decoder):
  ids = decoder.encode(PROMPTS)
  res = decoder.generate(DecodeRequest(ids, "never", max_new_tokens=MAX_NEW))
  assert decoder.last_stats.teacher_calls == 0
  assert all(r.teacher_prefilled == 0 and r.teacher_tokens == 0 for r in res)
  decoder.generate(DecodeRequest(ids, "step:1", max_new_tokens=MAX_NEW))
  assert decoder.last_stats.teacher_calls > 0


def test_teacher_prefills_each_position_once(decoder):
  """Lazy catch-up: teacher processes exactly the positions before its last written token."""
  ids = decoder.encode(PROMPTS)
  for spec in ("step:1", "step:2", "step:2,n=2", "always"):
    for p, r in zip(ids, decoder.generate(DecodeRequest(ids, spec, max_new_tokens=MAX_NEW))):
      if r.teacher_tokens:
        last = max(i for i, a in enumerate(r.authors) if a == 1)
        assert r.teacher_prefilled == len(p) + last, spec


def test_triggers_at_their_extremes(decoder):
  ids = decoder.encode(PROMPTS)
  gen = lambda spec: [
    (r.token_ids, r.authors) for r in decoder.generate(DecodeRequest(ids, spec, max_new_tokens=MAX_NEW))
  ]
  assert gen("entropy:0") == gen("always")
  assert gen("entropy:1e9") == gen("never")
  assert gen("maxprob:1.01,budget=1") == gen("step:1")
  assert gen("margin:2") == gen("always")
  assert gen("random:1") == gen("always")
  assert gen("random:0") == gen("never")


def test_sampled_runs_share_randomness_until_the_intervention(decoder):
  ids = decoder.encode(PROMPTS)
  kw = dict(max_new_tokens=MAX_NEW, sampling=Sampling(temperature=1.0, top_p=0.95, seed=[5, 6, 7]))
  a = decoder.generate(DecodeRequest(ids, "never", **kw))
  b = decoder.generate(DecodeRequest(ids, "step:3", **kw))
  again = decoder.generate(DecodeRequest(ids, "never", **kw))
  assert [r.token_ids for r in a] == [r.token_ids for r in again]
  for ra, rb in zip(a, b):
    first = rb.authors.index(1) if 1 in rb.authors else len(rb.authors)
    assert ra.token_ids[:first] == rb.token_ids[:first]
  greedy = decoder.generate(DecodeRequest(ids, "never", max_new_tokens=MAX_NEW))
  top1 = decoder.generate(
    DecodeRequest(
      ids, "never", max_new_tokens=MAX_NEW, sampling=Sampling(temperature=1.0, top_k=1, seed=[1, 2, 3])
    )
  )
  assert [r.token_ids for r in greedy] == [r.token_ids for r in top1]


def test_max_steps_and_step_ids(pair, decoder, delimiter):
  ids = decoder.encode(PROMPTS)
  for p, r in zip(ids, decoder.generate(DecodeRequest(ids, "step:1", max_new_tokens=MAX_NEW, max_steps=2))):
    want, authors = reference(pair, decoder, delimiter, p, teacher_steps={1}, max_steps=2)
    assert r.token_ids == want and r.authors == authors
    assert r.num_steps <= 2 and set(r.step_ids) <= {1, 2}
    assert r.intervention_steps == ([1] if 1 in authors else [])

"""The compiled guided loop against the plain host-side reference (tests/guided_reference.py)."""

import guided_reference as ref
import jax
import pytest

from decode.api import DecodeRequest, Sampling
from decode.core.policy import parse_policy
from decode.errors import DecodeInputError
from decode.host.guided import GuidedDecoder
from decode.host.placement import teacher_row_buckets

PROMPTS = ["what is 3+4?", "ab", "hello there. x"]
MAX_NEW = 24


@pytest.fixture(scope="module")
def delimiter(pair):
  """The content character that splits these random models' outputs into the most steps."""
  s, t = pair
  g = GuidedDecoder(s, t)
  ids = g.encode(PROMPTS)
  texts = [
    r.completion
    for p in ("never", "always")
    for r in g.generate(DecodeRequest(ids, p, max_new_tokens=MAX_NEW))
  ]
  counts = {c: sum(t.count(c) for t in texts) for c in "abcdefghijklmnopqrstuvwxyz0123456789$#?=+-*<>,."}
  return max(sorted(counts), key=counts.get)


@pytest.fixture(scope="module")
def decoder(pair, delimiter):
  s, t = pair
  return GuidedDecoder(s, t, step_delimiter=delimiter, teacher_chunk=4, prefill_chunk=5)


def _reference(pair, decoder, delimiter, prompt_ids, **kw):
  s, t = pair
  return ref.guided_greedy(
    s,
    t,
    prompt_ids,
    max_new=MAX_NEW,
    delimiter=delimiter,
    tokenizer=s.tokenizer,
    eos_id=s.tokenizer.eos_token_id,
    **kw,
  )


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
    want_ids, want_authors = _reference(pair, decoder, delimiter, prompt, **CASES[spec])
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


def test_teacher_sub_batches_equal_whole_batch(pair, delimiter):
  """The teacher decoding on a sub-batch of the rows that need it changes nothing but the cost."""
  s, t = pair
  ids = GuidedDecoder(s, t).encode(PROMPTS)
  specs = ["never", "step:1", "always", "step:2", "always", "hint:1,m=2", "always", "always"]
  prompts = [ids[i % len(ids)] for i in range(len(specs))]
  runs = {}
  for k in (0, 1, 3):  # whole batch only; B/2; B/2, B/4, B/8
    g = GuidedDecoder(s, t, step_delimiter=delimiter, teacher_sub_batches=k)
    assert teacher_row_buckets(8, k) == {0: (), 1: (4,), 3: (1, 2, 4)}[k]
    res = g.generate(DecodeRequest(prompts, specs, max_new_tokens=MAX_NEW))
    runs[k] = [(r.token_ids, r.authors, r.teacher_prefilled) for r in res]
  assert runs[1] == runs[0] and runs[3] == runs[0]
  assert any(sum(a) for _, a, _ in runs[0])


@pytest.mark.parametrize("count", [1, 2, 3, 5, 8])
def test_each_sub_batch_bucket_equals_the_whole_batch(pair, count):
  """forward_rows with buckets (1, 2, 4) for 1..8 rows in need == the whole-batch forward, logits and cache."""
  import jax.numpy as jnp
  import numpy as np

  from decode.core.loop import forward_rows
  from decode.core.state import LoopModel
  from model.lm import forward

  _, t = pair
  B, T = 8, 16
  rng = np.random.default_rng(count)
  zeros = jnp.zeros((B,), jnp.int32)
  _, cache = forward(
    t.cfg, t.params, jnp.asarray(rng.integers(4, 100, (B, 6))), zeros, zeros + 6, t.init_cache(B, T)
  )
  need = jnp.asarray(rng.permutation(np.arange(B) < count))
  tokens, start, n = jnp.asarray(rng.integers(4, 100, (B, 1))), zeros + 6, need.astype(jnp.int32)
  model = LoopModel(params=t.params, cfg=t.cfg)
  want, want_cache = forward_rows(model, (), tokens, start, n, cache, need, with_logits=True)
  got, got_cache = forward_rows(model, (1, 2, 4), tokens, start, n, cache, need, with_logits=True)
  rows = np.flatnonzero(np.asarray(need))
  np.testing.assert_allclose(np.asarray(got)[rows], np.asarray(want)[rows], atol=2e-5, rtol=2e-5)
  for a, b in zip(jax.tree.leaves(got_cache), jax.tree.leaves(want_cache)):
    np.testing.assert_allclose(np.asarray(a), np.asarray(b), atol=2e-5, rtol=2e-5)


@pytest.mark.parametrize("count", [1, 3, 8])
def test_catch_up_on_sub_batches_equals_the_whole_batch(pair, count):
  """Chunked catch-up of `count` rows with backlogs of different lengths, buckets (1, 2, 4) vs none."""
  import jax.numpy as jnp
  import numpy as np

  from decode.core.loop import catch_up
  from decode.core.state import LoopModel

  _, t = pair
  model = LoopModel(params=t.params, cfg=t.cfg)
  B, T = 8, 24
  rng = np.random.default_rng(count)
  tokens = jnp.asarray(rng.integers(4, 100, (B, T)))
  seen = jnp.asarray(rng.integers(0, 4, B))
  backlog = np.where(rng.permutation(np.arange(B) < count), rng.integers(1, 13, B), 0)
  target = seen + jnp.asarray(backlog)
  cache = t.init_cache(B, T)
  want, want_pos, _ = catch_up(model, tokens, cache, seen, target, 4)
  got, got_pos, _ = catch_up(model, tokens, cache, seen, target, 4, (1, 2, 4))
  np.testing.assert_array_equal(np.asarray(got_pos), np.asarray(want_pos))
  for a, b in zip(jax.tree.leaves(got), jax.tree.leaves(want)):
    np.testing.assert_allclose(np.asarray(a), np.asarray(b), atol=2e-5, rtol=2e-5)


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
    want, authors = _reference(pair, decoder, delimiter, p, teacher_steps={1}, max_steps=2)
    assert r.token_ids == want and r.authors == authors
    assert r.num_steps <= 2 and set(r.step_ids) <= {1, 2}
    assert r.intervention_steps == ([1] if 1 in authors else [])


def test_fork_from_student_prefix_equals_plain_run(decoder):
  """Continuing from the student's own first K-1 steps gives the plain step:K result."""
  ids = decoder.encode(PROMPTS)
  base = decoder.generate(DecodeRequest(ids, "never", max_new_tokens=MAX_NEW))
  k = 2
  for p, b in zip(ids, base):
    if b.num_steps < k:
      continue
    cut = b.step_ids.index(k)
    fork = decoder.generate(
      DecodeRequest([p], "step:2", max_new_tokens=MAX_NEW, prefixes=[b.token_ids[:cut]], prefix_steps=[k - 1])
    )[0]
    plain = decoder.generate(DecodeRequest([p], "step:2", max_new_tokens=MAX_NEW))[0]
    assert (fork.token_ids, fork.authors, fork.step_ids) == (plain.token_ids, plain.authors, plain.step_ids)
    assert (fork.student_tokens, fork.teacher_tokens, fork.switches) == (
      plain.student_tokens,
      plain.teacher_tokens,
      plain.switches,
    )


def _student_runs(pair, delimiter):
  """A fresh decoder, the prompts' ids, fixed shapes, and the student's own runs (fork mode's base)."""
  s, t = pair
  g = GuidedDecoder(s, t, step_delimiter=delimiter, teacher_chunk=4, prefill_chunk=5)
  ids = g.encode(PROMPTS)
  kw = dict(max_new_tokens=MAX_NEW, max_len=64, batch_size=4)
  return g, ids, kw, g.generate(DecodeRequest(ids, "never", **kw))


def test_prefilled_caches_equal_a_plain_run(pair, delimiter):
  """prefill once, then each timing from the cached rows == the plain run; the cached prefix is not re-read."""
  g, ids, kw, base = _student_runs(pair, delimiter)
  compiles = g.compiles
  caches = g.prefill(ids, [r.token_ids for r in base], max_len=64, batch_size=4)
  checked = 0
  for k in (1, 2, 3):
    rows = [i for i, r in enumerate(base) if k in r.step_ids][::-1]  # reversed: cache rows are gathered
    if not rows:
      continue
    prompts = [ids[i] for i in rows]
    prefixes = [base[i].token_ids[: base[i].step_ids.index(k)] for i in rows]
    plain = g.generate(DecodeRequest(prompts, f"step:{k}", **kw))
    cached = g.generate(
      DecodeRequest(
        prompts,
        f"step:{k}",
        prefixes=prefixes,
        prefix_steps=[k - 1] * len(rows),
        caches=caches.rows(rows, 4),
        **kw,
      )
    )
    for a, b in zip(plain, cached):
      assert (a.token_ids, a.authors, a.step_ids) == (b.token_ids, b.authors, b.step_ids), k
      assert b.teacher_prefilled == b.teacher_tokens < a.teacher_prefilled  # only its own step's positions
      checked += 1
  assert checked >= 3
  # prefill and cached calls run the same compiled program, with the same input layouts (a second
  # executable for other layouts would count as a compile too)
  assert g.compiles == compiles
  # Each call consumes (donates) its rows; the prefill's caches stay usable for any number of calls.
  plain0 = g.generate(DecodeRequest([ids[0]], "step:1", **kw))[0].token_ids
  rows0 = caches.rows([0], 4)
  assert g.generate(DecodeRequest([ids[0]], "step:1", caches=rows0, **kw))[0].token_ids == plain0
  with pytest.raises(DecodeInputError, match="consumed"):
    g.generate(DecodeRequest([ids[0]], "step:1", caches=rows0, **kw))
  assert (
    g.generate(DecodeRequest(ids[:3], "step:1", caches=caches, **kw))[0].token_ids == plain0
  )  # copied, not consumed
  assert (
    g.generate(DecodeRequest([ids[0]], "step:1", caches=caches.rows([0], 4), **kw))[0].token_ids == plain0
  )


def test_caches_holding_part_of_the_prefix(pair, delimiter):
  """Caches prefilled on a shorter prefix: the call prefills only the rest, from where they stop."""
  g, ids, kw, base = _student_runs(pair, delimiter)
  caches = g.prefill(ids, [r.token_ids[:2] for r in base], max_len=64, batch_size=4)
  prefixes = [r.token_ids[:7] for r in base]
  want = g.generate(DecodeRequest(ids, "always", prefixes=prefixes, **kw))
  got = g.generate(DecodeRequest(ids, "always", prefixes=prefixes, caches=caches.rows([0, 1, 2], 4), **kw))
  for a, b, p, q in zip(want, got, ids, prefixes):
    assert (a.token_ids, a.authors) == (b.token_ids, b.authors)
    assert (
      a.teacher_prefilled - b.teacher_prefilled == len(p) + 1
    )  # the cached prompt + 2 tokens, less the last
  other = GuidedDecoder(*pair, step_delimiter=delimiter)
  with pytest.raises(DecodeInputError, match="another GuidedDecoder"):
    other.generate(DecodeRequest(ids, "always", prefixes=prefixes, caches=caches.rows([0, 1, 2], 4), **kw))


def test_prefilled_caches_reject_other_rows(pair, delimiter):
  s, t = pair
  g = GuidedDecoder(s, t, step_delimiter=delimiter)
  ids = g.encode(PROMPTS)
  caches = g.prefill(ids, [[], [], []], max_len=64, batch_size=4)
  with pytest.raises(DecodeInputError, match="other tokens than its prompt"):
    g.generate(
      DecodeRequest(
        [ids[1]], "step:1", max_new_tokens=8, max_len=64, batch_size=4, caches=caches.rows([0], 4)
      )
    )
  with pytest.raises(DecodeInputError, match="needs 2 x 64"):
    g.generate(
      DecodeRequest(
        [ids[0]], "step:1", max_new_tokens=8, max_len=64, batch_size=2, caches=caches.rows([0], 4)
      )
    )
  with pytest.raises(DecodeInputError, match="out of range"):
    caches.rows([5], 4)


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

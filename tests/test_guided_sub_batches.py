"""The teacher decoding (and catching up) on sub-batches of the rows that need it: the same tokens,
logits and caches as the whole batch, only the cost changes."""

import jax
import pytest
from guided_cases import MAX_NEW, PROMPTS

from decode.api import DecodeRequest
from decode.host.guided import GuidedDecoder
from decode.host.placement import teacher_row_buckets


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

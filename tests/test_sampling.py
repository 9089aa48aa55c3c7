"""decode.core.sampling against a plain-Python reference of temperature / top-k / top-p sampling.

The reference below is written independently of the JAX code (a loop over tokens in rank order); every
case also lists its support worked out by hand, so a wrong reference cannot hide a wrong sampler.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from decode.core import sampling

N_DRAWS = 4000
SIGMAS = 5.0  # per-token two-sided tail ~6e-7; a few hundred comparisons stay far below 1e-3 overall

_sample = jax.jit(sampling.sample_tokens)


def reference_probs(logits, temperature: float, top_k: int, top_p: float) -> np.ndarray:
  """Distribution of one sampled (temperature > 0) row, float64, zero outside the kept tokens.

  Scale by the temperature; keep the k largest (every token tied with the k-th too; k <= 0 = all);
  over that top-k set renormalised, walk tokens from the most likely and keep each one whose mass
  strictly before it is < top_p; finally keep every token tied with the least likely kept one.
  """
  scaled = [float(x) / max(float(temperature), 1e-6) for x in logits]
  V = len(scaled)
  ranked = sorted(range(V), key=lambda i: -scaled[i])
  k = V if top_k <= 0 else min(top_k, V)
  kth_value = scaled[ranked[k - 1]]
  top = [i for i in ranked if scaled[i] >= kth_value]
  hi = max(scaled)
  weight = {i: math.exp(scaled[i] - hi) for i in range(V)}
  z_top = sum(weight[i] for i in top)
  kept, mass_before = [], 0.0
  for i in top:
    if mass_before < top_p:
      kept.append(i)
    mass_before += weight[i] / z_top
  cutoff = min(scaled[i] for i in kept)
  support = [i for i in range(V) if scaled[i] >= cutoff]
  z = sum(weight[i] for i in support)
  out = np.zeros(V)
  for i in support:
    out[i] = weight[i] / z
  return out


def draw_counts(logits, temperature, top_k, top_p, seed: int, n: int = N_DRAWS) -> np.ndarray:
  """Counts per token of n independent draws of one row (the row tiled n times, one key each)."""
  V = len(logits)
  keys = jax.random.split(jax.random.key(seed), n)
  tokens = _sample(
    jnp.tile(jnp.asarray(logits, jnp.float32)[None], (n, 1)),
    jnp.full((n,), temperature, jnp.float32),
    jnp.full((n,), top_k, jnp.int32),
    jnp.full((n,), top_p, jnp.float32),
    keys,
  )
  tokens = np.asarray(tokens)
  assert tokens.dtype == np.int32 and tokens.shape == (n,)
  assert tokens.min() >= 0 and tokens.max() < V
  return np.bincount(tokens, minlength=V)


def within_binomial_bound(counts: np.ndarray, probs: np.ndarray) -> np.ndarray:
  """Per token: |count - n p| <= SIGMAS * sqrt(n p (1 - p)) (+1 for the discreteness of counts)."""
  n = counts.sum()
  sigma = np.sqrt(n * probs * (1.0 - probs))
  return np.abs(counts - n * probs) <= SIGMAS * sigma + 1.0


# Ten tokens with probabilities (by rank) .30 .20 .15 .12 .08 .06 .04 .03 .015 .005, placed at shuffled ids
# so that rank order is not id order. Mass strictly before each rank: 0 .30 .50 .65 .77 .85 .91 .95 .98 .995.
RANK_PROBS = [0.30, 0.20, 0.15, 0.12, 0.08, 0.06, 0.04, 0.03, 0.015, 0.005]
RANK_IDS = [3, 7, 0, 9, 5, 1, 8, 2, 6, 4]
SHUFFLED = [0.0] * 10
for _p, _i in zip(RANK_PROBS, RANK_IDS):
  SHUFFLED[_i] = math.log(_p)
SHUFFLED = tuple(SHUFFLED)

# Ties: id 1 leads (2.0); ids 2, 3, 4, 9 tie at 1.0. Probabilities: e^2/Z = .339, each 1.0-token .125.
TIES = (0.0, 2.0, 1.0, 1.0, 1.0, -1.0, -1.0, 0.5, -2.0, 1.0)
# Two tokens (ids 1 and 3) tie for the maximum.
TOP_TIE = (0.5, 2.0, 0.0, 2.0, 1.0, -1.0, -1.0, 0.0, 0.2, 1.5)

ALL = set(range(10))

# (id, logits, temperature, top_k, top_p, support worked out by hand)
CASES = [
  ("plain", SHUFFLED, 1.0, 0, 1.0, ALL),
  ("top_k=1", SHUFFLED, 1.0, 1, 1.0, {3}),
  ("top_k=3", SHUFFLED, 1.0, 3, 1.0, {3, 7, 0}),
  ("top_k=V", SHUFFLED, 1.0, 10, 1.0, ALL),
  ("top_k>V", SHUFFLED, 1.0, 25, 1.0, ALL),
  ("top_p=0.1 only the top token", SHUFFLED, 1.0, 0, 0.1, {3}),
  ("top_p=0.6", SHUFFLED, 1.0, 0, 0.6, {3, 7, 0}),  # rank 3 has .65 before it
  ("top_p=0.7", SHUFFLED, 1.0, 0, 0.7, {3, 7, 0, 9}),  # rank 3: .65 < .7
  ("top_p=0.8", SHUFFLED, 1.0, 0, 0.8, {3, 7, 0, 9, 5}),
  # Within the top 4 renormalised (.390 .260 .195 .156) rank 3 has .844 before it: top-p binds first.
  ("top_k=4 top_p=0.7", SHUFFLED, 1.0, 4, 0.7, {3, 7, 0}),
  # Top 6 renormalised: mass before rank 5 is .934 < .95, so top-k is what binds.
  ("top_k=6 top_p=0.95", SHUFFLED, 1.0, 6, 0.95, {3, 7, 0, 9, 5, 1}),
  # T=2: probs ~ sqrt(p) -> .194 .158 .137 .123 .100 ...; before rank 4: .612 >= .6.
  ("T=2 top_p=0.6", SHUFFLED, 2.0, 0, 0.6, {3, 7, 0, 9}),
  # T=0.5: probs ~ p^2 -> .504 .224 .126 .081 .036 ...; before rank 4: .934 >= .9.
  ("T=0.5 top_p=0.9", SHUFFLED, 0.5, 0, 0.9, {3, 7, 0, 9}),
  ("ties at the top-k cutoff", TIES, 1.0, 2, 1.0, {1, 2, 3, 4, 9}),
  # Only the first of the tied 1.0-tokens has mass before it (.339) < .4; the others are kept as ties.
  ("ties at the top-p cutoff", TIES, 1.0, 0, 0.4, {1, 2, 3, 4, 9}),
  ("top_k=1 with a tied maximum", TOP_TIE, 1.0, 1, 1.0, {1, 3}),
]


@pytest.mark.parametrize(
  "logits,temperature,top_k,top_p,support", [c[1:] for c in CASES], ids=[c[0] for c in CASES]
)
def test_reference_support_matches_hand_worked(logits, temperature, top_k, top_p, support):
  probs = reference_probs(logits, temperature, top_k, top_p)
  assert set(np.flatnonzero(probs)) == support
  assert probs.sum() == pytest.approx(1.0)


@pytest.mark.parametrize("case", range(len(CASES)), ids=[c[0] for c in CASES])
def test_drawn_support_and_frequencies_match_reference(case):
  _, logits, temperature, top_k, top_p, support = CASES[case]
  probs = reference_probs(logits, temperature, top_k, top_p)
  # Every kept token is likely enough that N_DRAWS draws miss it with probability < e^-20.
  assert probs[probs > 0].min() * N_DRAWS > 20
  counts = draw_counts(logits, temperature, top_k, top_p, seed=1000 + case)
  assert set(np.flatnonzero(counts)) == support, counts
  ok = within_binomial_bound(counts, probs)
  assert ok.all(), f"counts {counts.tolist()} vs expected {(probs * N_DRAWS).round(1).tolist()}"


def test_frequency_bound_has_power():
  """The bound above is tight enough to tell T=2 from T=1 on the same kept tokens."""
  counts = draw_counts(SHUFFLED, 2.0, 0, 0.6, seed=7)
  right = reference_probs(SHUFFLED, 2.0, 0, 0.6)
  wrong = np.where(right > 0, reference_probs(SHUFFLED, 1.0, 0, 1.0), 0.0)
  wrong /= wrong.sum()
  assert within_binomial_bound(counts, right).all()
  assert not within_binomial_bound(counts, wrong).all()


SMALL_B, SMALL_V = 8, 64  # one compiled shape for the small-batch tests below


def _pad(row, fill=-5.0):
  return list(row) + [fill] * (SMALL_V - len(row))


def _params(temperature, top_k=0, top_p=1.0, B=SMALL_B):
  return (
    jnp.broadcast_to(jnp.asarray(temperature, jnp.float32), (B,)),
    jnp.broadcast_to(jnp.asarray(top_k, jnp.int32), (B,)),
    jnp.broadcast_to(jnp.asarray(top_p, jnp.float32), (B,)),
  )


def test_temperature_zero_is_argmax_for_any_key():
  rng = np.random.default_rng(0)
  logits = rng.normal(size=(SMALL_B, SMALL_V)).astype(np.float32) * 3
  logits[0], logits[1] = _pad(TOP_TIE), _pad(TOP_TIE[::-1])  # tied maxima: ids 1 & 3, and 6 & 8
  expected = np.argmax(logits, axis=-1)
  assert expected[0] == 1 and expected[1] == 6  # the first of the tied ids
  top_k = rng.integers(0, SMALL_V + 3, size=SMALL_B)  # filters play no part in greedy rows
  top_p = rng.uniform(0.05, 1.0, size=SMALL_B)
  for seed in range(5):
    keys = jax.random.split(jax.random.key(seed), SMALL_B)
    got = np.asarray(_sample(jnp.asarray(logits), *_params(0.0, top_k, top_p), keys))
    assert got.dtype == np.int32
    np.testing.assert_array_equal(got, expected)


def test_mixed_batch_greedy_rows_and_sampled_rows():
  """Greedy rows give the argmax under any key; sampled rows draw what they would in an all-sampled batch."""
  D = 300
  logits = jnp.asarray(np.random.default_rng(1).normal(size=(SMALL_B, SMALL_V)), jnp.float32)
  temperature = np.asarray([0.0, 1.0, 0.0, 0.7, 1.3, 0.0, 1.0, 0.0], np.float32)
  greedy = temperature == 0
  keys = jax.random.split(jax.random.key(11), D * SMALL_B).reshape(D, SMALL_B)

  over_keys = jax.jit(jax.vmap(sampling.sample_tokens, in_axes=(None, None, None, None, 0)))
  mixed = np.asarray(over_keys(logits, *_params(temperature), keys))  # [D, B]
  argmax = np.argmax(np.asarray(logits), axis=-1)
  assert (mixed[:, greedy] == argmax[greedy]).all()
  for row in np.flatnonzero(~greedy):
    assert len(set(mixed[:, row].tolist())) > 10  # really sampled, not argmax

  # The same rows, keys and parameters with no greedy row in the batch: identical draws in sampled rows.
  all_sampled = np.asarray(over_keys(logits, *_params(np.where(greedy, 1.0, temperature)), keys))
  np.testing.assert_array_equal(all_sampled[:, ~greedy], mixed[:, ~greedy])
  assert (all_sampled[:, greedy] != argmax[greedy]).any()


def test_same_key_same_draw_and_keys_matter():
  logits = jnp.zeros((SMALL_B, SMALL_V), jnp.float32)  # uniform over 64 tokens
  keys = jax.random.split(jax.random.key(5), SMALL_B)
  first = np.asarray(_sample(logits, *_params(1.0), keys))
  np.testing.assert_array_equal(np.asarray(_sample(logits, *_params(1.0), keys)), first)
  draws = np.stack(
    [
      np.asarray(_sample(logits, *_params(1.0), jax.random.split(jax.random.key(s), SMALL_B)))
      for s in range(10)
    ]
  )
  assert len(set(draws.ravel().tolist())) > 30  # 80 uniform draws over 64 tokens


def _data(keys) -> np.ndarray:
  return np.asarray(jax.random.key_data(keys))


def test_position_key_is_a_function_of_key_position_and_stream():
  seeds = jnp.arange(SMALL_B, dtype=jnp.int32)
  keys = sampling.row_keys(seeds)
  pos = jnp.asarray([4, 4, 9, 0, 1, 2, 3, 100], jnp.int32)
  a = sampling.position_key(keys, pos, 0)
  b = sampling.position_key(sampling.row_keys(seeds), pos, 0)
  np.testing.assert_array_equal(_data(a), _data(b))

  # Same key, same position, same stream: the same draw, whatever the rest of the batch is.
  logits = jnp.zeros((SMALL_B, SMALL_V), jnp.float32)
  np.testing.assert_array_equal(
    np.asarray(_sample(logits, *_params(1.0), a)), np.asarray(_sample(logits, *_params(1.0), b))
  )
  alone = sampling.position_key(keys[2:3], pos[2:3], 0)
  np.testing.assert_array_equal(_data(alone)[0], _data(a)[2])

  # Changing one row's position changes that row's key only.
  moved = sampling.position_key(keys, pos.at[1].set(5), 0)
  d_a, d_moved = _data(a), _data(moved)
  np.testing.assert_array_equal(np.delete(d_moved, 1, axis=0), np.delete(d_a, 1, axis=0))
  assert not np.array_equal(d_moved[1], d_a[1])

  # Another stream: every row's key differs.
  other = _data(sampling.position_key(keys, pos, 1))
  for r in range(SMALL_B):
    assert not np.array_equal(other[r], d_a[r])

  # Rows 0 and 1 share a position but not a seed: different keys.
  assert not np.array_equal(d_a[0], d_a[1])


def test_position_keys_are_distinct_across_positions_and_streams():
  P = 64
  key = sampling.row_keys(jnp.full((P,), 123, jnp.int32))
  pos = jnp.arange(P, dtype=jnp.int32)
  rows = np.concatenate([_data(sampling.position_key(key, pos, s)) for s in range(3)])
  rows = np.concatenate([rows, _data(key[:1])])  # and none equals the row key itself
  assert len({r.tobytes() for r in rows}) == 3 * P + 1
  # Distinct keys give distinct uniform draws (as a check that they are not just relabelled).
  u = np.asarray(jax.vmap(jax.random.uniform)(sampling.position_key(key, pos, 0)))
  assert len(set(u.tolist())) == P


def test_row_keys_follow_seeds():
  a = _data(sampling.row_keys(jnp.asarray([7, 8, 7], jnp.int32)))
  np.testing.assert_array_equal(a[0], a[2])
  assert not np.array_equal(a[0], a[1])
  np.testing.assert_array_equal(a[1], _data(jax.random.key(8)))

"""Per-row sampling with traced temperature / top-k / top-p (temperature 0 = greedy).

All parameters are arrays [B], so a batch can mix greedy and sampled rows without recompiling;
when every row is greedy the sort over the vocabulary is skipped at run time.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp


def row_keys(seeds: jnp.ndarray) -> jax.Array:
  """[B] int seeds -> [B] PRNG keys."""
  return jax.vmap(jax.random.key)(seeds)


# Independent random streams of a row at a position: the token draw and the policy's own draw
# (random:P). The loop and the text bridge both draw through these, so their rows agree.
SAMPLE_STREAM, POLICY_STREAM = 0, 1


def position_key(keys: jax.Array, positions: jnp.ndarray, stream: int) -> jax.Array:
  """Key of each row at a position; runs that differ only in policy share it (paired comparisons)."""
  return jax.vmap(lambda k, p: jax.random.fold_in(jax.random.fold_in(k, p), stream))(keys, positions)


def policy_uniform(keys: jax.Array, positions: jnp.ndarray) -> jax.Array:
  """keys [B], positions [B] -> [B] uniform draws of the policy stream (random:P fires below P)."""
  return jax.vmap(jax.random.uniform)(position_key(keys, positions, POLICY_STREAM))


def _filtered_logits(logits, temperature, top_k, top_p):
  """logits [B, V] scaled and with tokens outside top-k / top-p set to -inf."""
  V = logits.shape[-1]
  scaled = logits / jnp.maximum(temperature, 1e-6)[:, None]
  sorted_desc = -jnp.sort(-scaled, axis=-1)  # [B, V]
  k = jnp.where(top_k > 0, jnp.minimum(top_k, V), V)
  kth = jnp.take_along_axis(sorted_desc, (k - 1)[:, None], axis=-1)  # [B, 1]
  probs = jax.nn.softmax(jnp.where(sorted_desc >= kth, sorted_desc, -jnp.inf), axis=-1)
  before = jnp.cumsum(probs, axis=-1) - probs  # mass strictly above each sorted token
  keep_sorted = (before < top_p[:, None]) & (sorted_desc >= kth)
  cutoff = jnp.min(jnp.where(keep_sorted, sorted_desc, jnp.inf), axis=-1, keepdims=True)
  return jnp.where(scaled >= cutoff, scaled, -jnp.inf)


def sample_tokens(logits, temperature, top_k, top_p, keys) -> jnp.ndarray:
  """logits [B, V] float32; params [B]; keys [B] -> tokens [B] int32."""
  greedy = jnp.argmax(logits, axis=-1).astype(jnp.int32)

  def stochastic(_):
    filtered = _filtered_logits(logits, temperature, top_k, top_p)
    drawn = jax.vmap(jax.random.categorical)(keys, filtered).astype(jnp.int32)
    return jnp.where(temperature > 0, drawn, greedy)

  return jax.lax.cond(jnp.any(temperature > 0), stochastic, lambda _: greedy, None)

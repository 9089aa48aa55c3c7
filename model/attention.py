"""Grouped-query attention over the preallocated cache, causal (and windowed) in absolute positions.

Kept apart from the decoder's modules because it is the one hot path of decode: the dense form
(`attend`, chunked prefill and training) and the blocked one-token form (`attend_blocks`, only the
cache blocks up to the batch's latest position) must agree to float tolerance (tests/test_model_parity.py).
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp

from model.config import DecoderConfig


def attend(q, k_cache, v_cache, positions, window, scale=None, softcap=None):
  """Grouped-query attention of q [B, C, N, D] over the whole cache [B, K, S, D].

  Hand-written rather than jax.nn.dot_product_attention: that takes [B, S, K, D], and with the
  cache in that layout XLA transposes the entire cache every decode step (measured ~10x slower
  per token at S = 2048 on CPU). Causal in absolute positions; softmax in float32.
  window: [] int32 sliding window of this layer (0 = full attention); traced, so layers with and
  without a window share the scanned body.
  scale: logit scale (None: D ** -0.5); softcap: logits -> softcap * tanh(logits / softcap) (Gemma 2).
  """
  B, C, N, D = q.shape
  K, S = k_cache.shape[1], k_cache.shape[2]
  qg = q.reshape(B, C, K, N // K, D).transpose(0, 2, 3, 1, 4)  # [B, K, G, C, D]
  scale = D**-0.5 if scale is None else scale
  logits = _masked_logits(qg, k_cache, jnp.arange(S), positions, window, scale, softcap)
  probs = jax.nn.softmax(logits, axis=-1).astype(v_cache.dtype)
  out = jnp.einsum("bkgcs,bksd->bkgcd", probs, v_cache)  # [B, K, G, C, D]
  return out.transpose(0, 3, 1, 2, 4).reshape(B, C, N, D)


def attend_blocks(q, keys, values, layer, rows, positions, window, block: int, scale=None, softcap=None):
  """`attend` for decode, reading layer `layer` of the stacked cache [L, B, K, S, D] in blocks of
  `block` positions, and only the blocks that hold a position some row can see.

  Why: the dense path copies the layer's whole [B, K, S, D] slice out of the stacked cache before
  its dots (XLA:CPU does not alias slices) and reads all S positions, though a row sees only its own
  past: with long few-shot prompts in a bucketed buffer most of a decode step was this read. Here a
  step reads blocks [first, last] (last: the batch's latest position; first: past every row's sliding
  window), each a small copy. Online softmax in float32; a block a row cannot see changes its
  result by exactly nothing, so each row's output does not depend on the other rows of its batch.
  rows [b]: the cache rows of q's rows (None: all, b == B).
  """
  b, C, N, D = q.shape
  _, B, K, S, _ = keys.shape
  G = N // K
  qg = q.reshape(b, C, K, G, D).transpose(0, 2, 3, 1, 4)  # [b, K, G, C, D]
  scale = D**-0.5 if scale is None else scale
  lowest = jnp.where(window > 0, jnp.maximum(jnp.min(positions) - window + 1, 0), 0)
  first, last = lowest // block, jnp.max(positions) // block

  def read(cache, j):  # [b, K, block, D]: one gather of only these rows' block, never all B rows'
    if rows is None:
      return jax.lax.dynamic_slice(cache, (layer, 0, 0, j * block, 0), (1, B, K, block, D))[0]
    take = lambda r: jax.lax.dynamic_slice(cache, (layer, r, 0, j * block, 0), (1, 1, K, block, D))[0, 0]
    return jax.vmap(take)(rows)

  def body(carry):
    j, top, total, acc = carry  # [], [b, K, G, C] running max and normaliser, acc [b, K, G, C, D]
    key_pos = j * block + jnp.arange(block)
    logits = _masked_logits(qg, read(keys, j), key_pos, positions, window, scale, softcap)
    new_top = jnp.maximum(top, jnp.max(logits, axis=-1))
    p = jnp.exp(logits - new_top[..., None])  # [b, K, G, C, block]
    fade = jnp.exp(top - new_top)
    pv = jnp.einsum("bkgcs,bksd->bkgcd", p.astype(values.dtype), read(values, j))
    return j + 1, new_top, total * fade + jnp.sum(p, axis=-1), acc * fade[..., None] + pv

  floor = jnp.finfo(jnp.float32).min
  init = (
    first,
    jnp.full((b, K, G, C), floor, jnp.float32),
    jnp.zeros((b, K, G, C), jnp.float32),
    jnp.zeros((b, K, G, C, D), jnp.float32),
  )
  _, _, total, acc = jax.lax.while_loop(lambda c: c[0] <= last, body, init)
  out = (acc / total[..., None]).astype(q.dtype)  # [b, K, G, C, D]
  return out.transpose(0, 3, 1, 2, 4).reshape(b, C, N, D)


def decode_block(cfg: DecoderConfig, C: int, S: int) -> int:
  """Cache positions per block of blocked decode attention, or 0 for the dense path.

  Blocks of gcd(S, cfg.decode_block) positions (the length bucket makes that cfg.decode_block or
  a large divisor of it), not under an eighth of cfg.decode_block, and only for buffers of at least
  4 blocks: below that the loop's overhead outweighs the positions it skips (measured: a fork sweep
  at T = 192 ran ~5% slower in 3 blocks of 64). Only one-token forwards: a while_loop has no
  reverse-mode gradient, so training and chunked prefill (compute-bound anyway) stay dense.
  """
  b = math.gcd(S, cfg.decode_block)
  return b if C == 1 and cfg.decode_block > 0 and 4 * b <= S and 8 * b >= cfg.decode_block else 0


def _masked_logits(qg, k, key_pos, positions, window, scale, softcap):
  """qg [B, K, G, C, D] . k [B, K, s, D] -> float32 logits [B, K, G, C, s], causal (and windowed) in
  absolute positions key_pos [s]; masked entries are the float32 minimum."""
  logits = jnp.einsum("bkgcd,bksd->bkgcs", qg, k, preferred_element_type=jnp.float32) * scale
  if softcap is not None:
    logits = jnp.tanh(logits / softcap) * softcap
  q_pos = positions[:, :, None]  # [B, C, 1]
  mask = (key_pos[None, None, :] <= q_pos) & ((window <= 0) | (key_pos[None, None, :] > q_pos - window))
  return jnp.where(mask[:, None, None], logits, jnp.finfo(jnp.float32).min)

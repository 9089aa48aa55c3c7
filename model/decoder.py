"""One config-driven Flax decoder for the Llama family (Llama 2/3, Mistral, Qwen2/2.5, Qwen3).

A single forward serves prompt prefill, chunked catch-up and single-token decode:

  hidden, cache = Decoder(cfg).apply(params, tokens, start, lengths, cache)

tokens [B, C] are written at absolute positions start[b] .. start[b] + lengths[b] - 1 of the
preallocated cache; tokens past a row's length are padding and never touch the cache. Every param
carries logical axis names so configs/sharding_rules.py can place it on a mesh.
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp

from model.config import DecoderConfig
from model.kv_cache import KVCache, write_chunk
from model.rope import apply_rope, inverse_frequencies

_part = nn.with_logical_partitioning
_init = nn.initializers.normal(stddev=0.02)


class RMSNorm(nn.Module):
  eps: float
  dtype: jnp.dtype

  @nn.compact
  def __call__(self, x):
    w = self.param("scale", _part(nn.initializers.ones, ("norm",)), (x.shape[-1],), self.dtype)
    xf = x.astype(jnp.float32)
    xf = xf * jax.lax.rsqrt(jnp.mean(xf * xf, axis=-1, keepdims=True) + self.eps)
    return w * xf.astype(self.dtype)


def _dense(features: int, axes: tuple[str, str], bias: bool, dtype, name: str) -> nn.Dense:
  return nn.Dense(
    features,
    use_bias=bias,
    dtype=dtype,
    param_dtype=dtype,
    name=name,
    kernel_init=_part(_init, axes),
    bias_init=_part(nn.initializers.zeros, axes[1:]),
  )


def attend(q, k_cache, v_cache, positions, window: int | None):
  """Grouped-query attention of q [B, C, N, D] over the whole cache [B, K, S, D].

  Hand-written rather than jax.nn.dot_product_attention: that takes [B, S, K, D], and with the
  cache in that layout XLA transposes the entire cache every decode step (measured ~10x slower
  per token at S = 2048 on CPU). Causal in absolute positions; softmax in float32.
  """
  B, C, N, D = q.shape
  K, S = k_cache.shape[1], k_cache.shape[2]
  qg = q.reshape(B, C, K, N // K, D).transpose(0, 2, 3, 1, 4)  # [B, K, G, C, D]
  logits = jnp.einsum("bkgcd,bksd->bkgcs", qg, k_cache, preferred_element_type=jnp.float32) * D**-0.5
  key_pos = jnp.arange(S)[None, None, :]  # [1, 1, S]
  q_pos = positions[:, :, None]  # [B, C, 1]
  mask = key_pos <= q_pos  # [B, C, S]
  if window:
    mask &= key_pos > q_pos - window
  logits = jnp.where(mask[:, None, None], logits, jnp.finfo(jnp.float32).min)
  probs = jax.nn.softmax(logits, axis=-1).astype(v_cache.dtype)
  out = jnp.einsum("bkgcs,bksd->bkgcd", probs, v_cache)  # [B, K, G, C, D]
  return out.transpose(0, 3, 1, 2, 4).reshape(B, C, N, D)


class Attention(nn.Module):
  cfg: DecoderConfig
  layer: int

  @nn.compact
  def __call__(self, x, positions, start, lengths, k_cache, v_cache, rows=None):
    """x [b, C, E]; positions [b, C]; caches [B, K, S, D] -> (out [b, C, E], k_cache, v_cache).

    rows [b]: the cache rows x belongs to (None: all of them, b == B).
    """
    cfg, dt = self.cfg, self.cfg.jnp_dtype
    B, C, _ = x.shape
    N, K, D = cfg.num_heads, cfg.num_kv_heads, cfg.head_dim
    q = _dense(N * D, ("embed", "heads"), cfg.qkv_bias, dt, "q_proj")(x).reshape(B, C, N, D)
    k = _dense(K * D, ("embed", "kv_heads"), cfg.qkv_bias, dt, "k_proj")(x).reshape(B, C, K, D)
    v = _dense(K * D, ("embed", "kv_heads"), cfg.qkv_bias, dt, "v_proj")(x).reshape(B, C, K, D)
    if cfg.qk_norm:
      q = RMSNorm(cfg.rms_norm_eps, dt, name="q_norm")(q)
      k = RMSNorm(cfg.rms_norm_eps, dt, name="k_norm")(k)
    inv_freq = inverse_frequencies(cfg.rope, D)
    q = apply_rope(q, positions, inv_freq)
    k = apply_rope(k, positions, inv_freq)

    k_cache = write_chunk(k_cache, k.transpose(0, 2, 1, 3), start, lengths, rows)  # [B, K, S, D]
    v_cache = write_chunk(v_cache, v.transpose(0, 2, 1, 3), start, lengths, rows)
    k_rows, v_rows = (k_cache, v_cache) if rows is None else (k_cache[rows], v_cache[rows])  # [b, K, S, D]
    out = attend(q, k_rows, v_rows, positions, cfg.window(self.layer))  # [b, C, N, D]
    out = out.reshape(B, C, N * D)
    return _dense(cfg.hidden_size, ("heads", "embed"), cfg.o_bias, dt, "o_proj")(out), k_cache, v_cache


class MLP(nn.Module):
  cfg: DecoderConfig

  @nn.compact
  def __call__(self, x):
    cfg, dt = self.cfg, self.cfg.jnp_dtype
    gate = _dense(cfg.intermediate_size, ("embed", "mlp"), cfg.mlp_bias, dt, "gate_proj")(x)
    up = _dense(cfg.intermediate_size, ("embed", "mlp"), cfg.mlp_bias, dt, "up_proj")(x)
    return _dense(cfg.hidden_size, ("mlp", "embed"), cfg.mlp_bias, dt, "down_proj")(nn.silu(gate) * up)


class Block(nn.Module):
  cfg: DecoderConfig
  layer: int

  @nn.compact
  def __call__(self, x, positions, start, lengths, k_cache, v_cache, rows=None):
    cfg = self.cfg
    h, k_cache, v_cache = Attention(cfg, self.layer, name="attn")(
      RMSNorm(cfg.rms_norm_eps, cfg.jnp_dtype, name="input_norm")(x),
      positions,
      start,
      lengths,
      k_cache,
      v_cache,
      rows,
    )
    x = x + h
    x = x + MLP(cfg, name="mlp")(RMSNorm(cfg.rms_norm_eps, cfg.jnp_dtype, name="post_attn_norm")(x))
    return x, k_cache, v_cache


class Decoder(nn.Module):
  """Returns final-norm hidden states [B, C, E] and the updated cache; `logits` maps them to [.., V]."""

  cfg: DecoderConfig

  def setup(self):
    cfg = self.cfg
    self.embed = nn.Embed(
      cfg.vocab_size,
      cfg.hidden_size,
      dtype=cfg.jnp_dtype,
      param_dtype=cfg.jnp_dtype,
      embedding_init=_part(_init, ("vocab", "embed")),
      name="embed_tokens",
    )
    self.blocks = [Block(cfg, i, name=f"layers_{i}") for i in range(cfg.num_layers)]
    self.norm = RMSNorm(cfg.rms_norm_eps, cfg.jnp_dtype, name="norm")
    if not cfg.tie_word_embeddings:
      self.lm_head = nn.Dense(
        cfg.vocab_size,
        use_bias=False,
        dtype=cfg.jnp_dtype,
        param_dtype=cfg.jnp_dtype,
        kernel_init=_part(_init, ("embed", "vocab")),
        name="lm_head",
      )

  def __call__(self, tokens, start, lengths, cache: KVCache, rows=None):
    """tokens [b, C] int32; start [b]; lengths [b] (valid tokens per row).

    rows [b] int32: the cache rows these token rows belong to, so a forward can run on a sub-batch
    of the cache's B rows (None: all rows, b == B). Attention then reads only those rows.
    """
    C = tokens.shape[1]
    positions = start[:, None] + jnp.arange(C, dtype=start.dtype)[None, :]  # [B, C]
    x = self.embed(tokens)
    keys, values = [], []
    for i, block in enumerate(self.blocks):
      x, k, v = block(x, positions, start, lengths, cache.keys[i], cache.values[i], rows)
      keys.append(k)
      values.append(v)
    return self.norm(x), KVCache(keys=tuple(keys), values=tuple(values))

  def logits(self, hidden):
    """hidden [B, C, E] -> float32 logits [B, C, V]."""
    if self.cfg.tie_word_embeddings:
      out = self.embed.attend(hidden)
    else:
      out = self.lm_head(hidden)
    return out.astype(jnp.float32)

  def forward_logits(self, tokens, start, lengths, cache: KVCache, rows=None):
    hidden, cache = self(tokens, start, lengths, cache, rows)
    return self.logits(hidden), cache

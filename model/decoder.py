"""One config-driven Flax decoder for the Llama family (Llama 2/3, Mistral, Qwen2/2.5, Qwen3).

A single forward serves prompt prefill, chunked catch-up and single-token decode:

  hidden, cache = Decoder(cfg).apply(params, tokens, start, lengths, cache)

tokens [B, C] are written at absolute positions start[b] .. start[b] + lengths[b] - 1 of the
preallocated cache; tokens past a row's length are padding and never touch the cache. Every param
carries logical axis names so configs/sharding_rules.py can place it on a mesh.

Layers are scanned (`nn.scan`): block params are stacked with a leading `layers` axis and the
program holds one layer body, so compile time is nearly flat in depth (maxtext, levanter). The
cache [L, B, K, S, D] travels in the scan's carry and each layer writes its new keys in place;
`cfg.scan_unroll` unrolls the scan (same params, same results) where a backend decodes faster so.
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


def attend(q, k_cache, v_cache, positions, window):
  """Grouped-query attention of q [B, C, N, D] over the whole cache [B, K, S, D].

  Hand-written rather than jax.nn.dot_product_attention: that takes [B, S, K, D], and with the
  cache in that layout XLA transposes the entire cache every decode step (measured ~10x slower
  per token at S = 2048 on CPU). Causal in absolute positions; softmax in float32.
  window: [] int32 sliding window of this layer (0 = full attention); traced, so layers with and
  without a window share the scanned body.
  """
  B, C, N, D = q.shape
  K, S = k_cache.shape[1], k_cache.shape[2]
  qg = q.reshape(B, C, K, N // K, D).transpose(0, 2, 3, 1, 4)  # [B, K, G, C, D]
  logits = jnp.einsum("bkgcd,bksd->bkgcs", qg, k_cache, preferred_element_type=jnp.float32) * D**-0.5
  key_pos = jnp.arange(S)[None, None, :]  # [1, 1, S]
  q_pos = positions[:, :, None]  # [B, C, 1]
  mask = (key_pos <= q_pos) & ((window <= 0) | (key_pos > q_pos - window))  # [B, C, S]
  logits = jnp.where(mask[:, None, None], logits, jnp.finfo(jnp.float32).min)
  probs = jax.nn.softmax(logits, axis=-1).astype(v_cache.dtype)
  out = jnp.einsum("bkgcs,bksd->bkgcd", probs, v_cache)  # [B, K, G, C, D]
  return out.transpose(0, 3, 1, 2, 4).reshape(B, C, N, D)


class Attention(nn.Module):
  cfg: DecoderConfig

  @nn.compact
  def __call__(self, x, positions, start, lengths, cache: KVCache, layer, window, rows=None):
    """x [b, C, E]; positions [b, C]; cache L x [B, K, S, D] -> (out [b, C, E], cache).

    Writes this layer's keys/values into cache[layer] in place. rows [b]: the cache rows x belongs
    to (None: all of them, b == B).
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

    keys = write_chunk(cache.keys, k.transpose(0, 2, 1, 3), layer, start, lengths, rows)  # [L, B, K, S, D]
    values = write_chunk(cache.values, v.transpose(0, 2, 1, 3), layer, start, lengths, rows)
    k_layer, v_layer = keys[layer], values[layer]  # [B, K, S, D]
    if rows is not None:
      k_layer, v_layer = k_layer[rows], v_layer[rows]  # [b, K, S, D]
    out = attend(q, k_layer, v_layer, positions, window)  # [b, C, N, D]
    out = out.reshape(B, C, N * D)
    out = _dense(cfg.hidden_size, ("heads", "embed"), cfg.o_bias, dt, "o_proj")(out)
    return out, KVCache(keys=keys, values=values)


class MLP(nn.Module):
  cfg: DecoderConfig

  @nn.compact
  def __call__(self, x):
    cfg, dt = self.cfg, self.cfg.jnp_dtype
    gate = _dense(cfg.intermediate_size, ("embed", "mlp"), cfg.mlp_bias, dt, "gate_proj")(x)
    up = _dense(cfg.intermediate_size, ("embed", "mlp"), cfg.mlp_bias, dt, "up_proj")(x)
    return _dense(cfg.hidden_size, ("mlp", "embed"), cfg.mlp_bias, dt, "down_proj")(nn.silu(gate) * up)


class Block(nn.Module):
  """One decoder layer as a scan step: carry (x [b, C, E], cache, layer index) -> next carry."""

  cfg: DecoderConfig

  @nn.compact
  def __call__(self, carry, window, positions, start, lengths, rows):
    x, cache, layer = carry
    cfg = self.cfg
    h, cache = Attention(cfg, name="attn")(
      RMSNorm(cfg.rms_norm_eps, cfg.jnp_dtype, name="input_norm")(x),
      positions,
      start,
      lengths,
      cache,
      layer,
      window,
      rows,
    )
    x = x + h
    x = x + MLP(cfg, name="mlp")(RMSNorm(cfg.rms_norm_eps, cfg.jnp_dtype, name="post_attn_norm")(x))
    return (x, cache, layer + 1), None


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
    scanned = nn.scan(
      Block,
      variable_axes={"params": 0},
      split_rngs={"params": True},
      in_axes=(0, nn.broadcast, nn.broadcast, nn.broadcast, nn.broadcast),
      length=cfg.num_layers,
      unroll=cfg.scan_unroll,
      metadata_params={nn.PARTITION_NAME: "layers"},
    )
    self.layers = scanned(cfg, name="layers")
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
    windows = jnp.asarray(self.cfg.layer_windows(), jnp.int32)  # [L] (0 = full attention)
    (x, cache, _), _ = self.layers(
      (x, cache, jnp.zeros((), jnp.int32)), windows, positions, start, lengths, rows
    )
    return self.norm(x), cache

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

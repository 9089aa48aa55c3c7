"""One config-driven Flax decoder: the Llama family (Llama 2/3, Mistral, Qwen2/2.5, Qwen3) and the
families that differ from it in a few places (Gemma 1/2, Phi-3, OLMo 1/2, GPT-2).

A single forward serves prompt prefill, chunked catch-up and single-token decode:

  hidden, cache = Decoder(cfg).apply(params, tokens, start, lengths, cache)

tokens [B, C] are written at absolute positions start[b] .. start[b] + lengths[b] - 1 of the
preallocated cache; tokens past a row's length are padding and never touch the cache. Every param
carries logical axis names so configs/sharding_rules.py can place it on a mesh.

Layers are scanned: the program holds one layer body, so compile time is nearly flat in depth
(maxtext, levanter). The cache [L, B, K, S, D] travels in the scan's carry and each layer writes its
new keys in place. How the scan reaches a layer's weights is cfg.layer_params (model/config.py):
stacked params (`layers`, a leading [L] axis, `nn.scan`) are sliced per layer, which XLA:CPU copies
before every dot; per-layer params (`layers_0`, ...) are picked at each dot by a switch over the
layers (`Decoder._scan_per_layer`, model/layer_stack.py) and read in place: the default on CPU.
`cfg.scan_layers=False` unrolls the layers over per-layer params (compile time grows with depth).

A one-token forward (decode) reads each layer's cache in blocks up to the batch's latest position
(`attend_blocks`, cfg.decode_block), so its cost follows the longest row rather than the buffer
length; longer forwards (chunked prefill, training) attend over the whole buffer at once (`attend`).
Both live in model/attention.py (still importable from here).

Each family variation is a Python branch on a static config field (model/config.py), so a family
that does not use one traces none of its ops: the Llama program is the same as before they existed.
"""

from __future__ import annotations

import functools

import flax.linen as nn
import jax
import jax.numpy as jnp

from model import layer_stack, matvec
from model.attention import attend, attend_blocks, decode_block
from model.config import DecoderConfig
from model.kv_cache import KVCache, write_chunk
from model.rope import apply_rope, inverse_frequencies, longrope_frequencies

_part = nn.with_logical_partitioning
_init = nn.initializers.normal(stddev=0.02)


_ACTIVATIONS = {
  "silu": nn.silu,
  "gelu_tanh": functools.partial(nn.gelu, approximate=True),
  "gelu": functools.partial(nn.gelu, approximate=False),
}


class Norm(nn.Module):
  """Normalisation over the last axis, in float32; `kind` (config.NORMS) says where the weight goes.

  rms: w * rms(x) cast first (Llama); rms_f32: (w * rms(x)) cast last (OLMo 2); gemma_rms:
  ((1 + w) * rms(x)) cast last, w stored as HF stores it; layernorm: LayerNorm with weight and bias
  (GPT-2); layernorm_plain: LayerNorm without params (OLMo).
  """

  kind: str
  eps: float
  dtype: jnp.dtype

  @nn.compact
  def __call__(self, x):
    if self.kind == "layernorm_plain":
      return _layernorm(x, self.eps).astype(self.dtype)
    init = nn.initializers.zeros if self.kind == "gemma_rms" else nn.initializers.ones
    w = layer_stack.value(
      layer_stack.param(self, "scale", _part(init, ("norm",)), (x.shape[-1],), self.dtype)
    )
    if self.kind == "layernorm":
      zeros = _part(nn.initializers.zeros, ("norm",))
      b = layer_stack.value(layer_stack.param(self, "bias", zeros, (x.shape[-1],), self.dtype))
      out = _layernorm(x, self.eps) * w.astype(jnp.float32) + b.astype(jnp.float32)
      return out.astype(self.dtype)
    xf = x.astype(jnp.float32)
    xf = xf * jax.lax.rsqrt(jnp.mean(xf * xf, axis=-1, keepdims=True) + self.eps)
    if self.kind == "rms":
      return w * xf.astype(self.dtype)
    if self.kind == "rms_f32":
      return (w.astype(jnp.float32) * xf).astype(self.dtype)
    if self.kind == "gemma_rms":
      return ((1.0 + w.astype(jnp.float32)) * xf).astype(self.dtype)
    raise ValueError(f"unknown norm kind {self.kind!r}")


def _layernorm(x, eps):
  """(x - mean) / std over the last axis, float32 (biased variance, as torch)."""
  xf = x.astype(jnp.float32)
  xf = xf - jnp.mean(xf, axis=-1, keepdims=True)
  return xf * jax.lax.rsqrt(jnp.mean(xf * xf, axis=-1, keepdims=True) + eps)


def _norm(cfg: DecoderConfig, name: str) -> Norm:
  return Norm(cfg.norm, cfg.rms_norm_eps, cfg.jnp_dtype, name=name)


class Linear(nn.Module):
  """nn.Dense's params (kernel [in, *features], bias [*features]) and math, also over per-layer
  params: in the scanned body over per-layer params its kernel is a LayerStack, whose dot reads the
  current layer's own array in place (model/layer_stack.py)."""

  features: int | tuple[int, ...]  # a tuple for a fused projection's grouped outputs
  axes: tuple[str | None, ...]  # logical axes of the kernel
  use_bias: bool
  dtype: jnp.dtype
  slices: int = 1  # a one-row x's dot runs over this many slices of `in` (model/matvec.py)

  @nn.compact
  def __call__(self, x):
    """x [..., in] -> [..., *features]."""
    features = (self.features,) if isinstance(self.features, int) else tuple(self.features)
    shape = (x.shape[-1], *features)
    kernel = layer_stack.param(self, "kernel", _part(_init, self.axes), shape, self.dtype)
    x = x.astype(self.dtype)
    dot = functools.partial(matvec.dot_in_out, slices=self.slices)
    if isinstance(kernel, layer_stack.LayerStack):
      y = kernel.dot(dot, x)
    else:
      y = dot(x, kernel.astype(self.dtype))
    if self.use_bias:
      init = _part(nn.initializers.zeros, self.axes[1:])
      bias = layer_stack.value(layer_stack.param(self, "bias", init, features, self.dtype))
      y += jnp.reshape(bias.astype(self.dtype), (1,) * (y.ndim - len(features)) + features)
    return y


def _dense(cfg: DecoderConfig, features, axes: tuple[str | None, ...], bias: bool, name: str) -> Linear:
  return Linear(features, axes, bias, cfg.jnp_dtype, cfg.matvec_split, name=name)


class Attention(nn.Module):
  cfg: DecoderConfig

  @nn.compact
  def __call__(self, x, positions, start, lengths, cache: KVCache, layer, window, rows=None):
    """x [b, C, E]; positions [b, C]; cache L x [B, K, S, D] -> (out [b, C, E], cache).

    Writes this layer's keys/values into cache[layer] in place. rows [b]: the cache rows x belongs
    to (None: all of them, b == B).
    """
    cfg = self.cfg
    B, C, _ = x.shape
    N, K, D = cfg.num_heads, cfg.num_kv_heads, cfg.head_dim

    if cfg.fuse_projections:  # one dot (model/fused_projections.py): [B, C, K, N/K + 2, D]
      t = _dense(cfg, (K, N // K + 2, D), ("embed", "kv_heads", None, "head_dim"), cfg.qkv_bias, "qkv_proj")(
        x
      )
      R = N // K
      flat = {"q": t[..., :R, :], "k": t[..., R, :], "v": t[..., R + 1, :]}
      flat = {name: y.reshape(B, C, -1) for name, y in flat.items()}  # [B, C, heads * D]
    else:
      flat = {
        name: _dense(cfg, heads * D, ("embed", axis), cfg.qkv_bias, f"{name}_proj")(x)  # [B, C, heads * D]
        for name, heads, axis in (("q", N, "heads"), ("k", K, "kv_heads"), ("v", K, "kv_heads"))
      }

    def heads_of(name, heads):
      """[B, C, heads * D] -> [B, C, heads, D]; OLMo clips the projection, OLMo 2 norms it across all heads."""
      t = flat[name]
      if cfg.clip_qkv is not None:
        t = jnp.clip(t, -cfg.clip_qkv, cfg.clip_qkv)
      if cfg.qk_norm_full and name != "v":
        t = _norm(cfg, f"{name}_norm")(t)
      return t.reshape(B, C, heads, D)

    q, k, v = heads_of("q", N), heads_of("k", K), heads_of("v", K)
    if cfg.qk_norm:  # Qwen3: per head
      q, k = _norm(cfg, "q_norm")(q), _norm(cfg, "k_norm")(k)
    if not cfg.learned_positions:
      if cfg.rope.kind == "longrope":
        inv_freq = longrope_frequencies(cfg.rope, D, start + lengths)  # [b, 1, R/2]
      else:
        inv_freq = inverse_frequencies(cfg.rope, D)
      q = apply_rope(q, positions, inv_freq, cfg.rope.attention_factor)
      k = apply_rope(k, positions, inv_freq, cfg.rope.attention_factor)

    keys = write_chunk(cache.keys, k.transpose(0, 2, 1, 3), layer, start, lengths, rows)  # [L, B, K, S, D]
    values = write_chunk(cache.values, v.transpose(0, 2, 1, 3), layer, start, lengths, rows)
    scale = None if cfg.query_pre_attn_scalar is None else cfg.query_pre_attn_scalar**-0.5
    block = decode_block(cfg, C, keys.shape[3])
    if block:  # one-token decode: only the cache blocks up to the batch's latest position
      out = attend_blocks(q, keys, values, layer, rows, positions, window, block, scale, cfg.attn_softcap)
    else:
      if rows is None:
        k_layer, v_layer = keys[layer], values[layer]  # [B, K, S, D]
      else:  # one gather of these rows (not the layer's B rows, then a gather)
        k_layer, v_layer = keys[layer, rows], values[layer, rows]  # [b, K, S, D]
      out = attend(q, k_layer, v_layer, positions, window, scale, cfg.attn_softcap)  # [b, C, N, D]
    out = out.reshape(B, C, N * D)
    out = _dense(cfg, cfg.hidden_size, ("heads", "embed"), cfg.o_bias, "o_proj")(out)
    return out, KVCache(keys=keys, values=values)


class MLP(nn.Module):
  cfg: DecoderConfig

  @nn.compact
  def __call__(self, x):
    """x [B, C, E] -> [B, C, E]: down(act(gate) * up), or down(act(up)) without a gate (GPT-2)."""
    cfg = self.cfg
    act = _ACTIVATIONS[cfg.activation]
    widen = functools.partial(_dense, cfg, cfg.intermediate_size, ("embed", "mlp"), cfg.mlp_bias)
    if cfg.gated_mlp and cfg.fuse_projections:  # one dot (model/fused_projections.py)
      y = _dense(cfg, (2, cfg.intermediate_size), ("embed", None, "mlp"), cfg.mlp_bias, "gate_up_proj")(x)
      h = act(y[..., 0, :]) * y[..., 1, :]  # [B, C, I]
    elif cfg.gated_mlp:
      gate, up = widen(name="gate_proj")(x), widen(name="up_proj")(x)  # [B, C, I]
      h = act(gate) * up
    else:
      h = act(widen(name="up_proj")(x))
    return _dense(cfg, cfg.hidden_size, ("mlp", "embed"), cfg.mlp_bias, "down_proj")(h)


class Block(nn.Module):
  """One decoder layer as a scan step: carry (x [b, C, E], cache, layer index) -> next carry.

  cfg.block_norms: pre (Llama) norms each sublayer's input (input_norm, then post_attn_norm before
  the MLP, HF's post_attention_layernorm); pre_post (Gemma 2) also norms each sublayer's output
  (attn_out_norm, mlp_out_norm); post (OLMo 2) norms only the outputs.
  """

  cfg: DecoderConfig

  @nn.compact
  def __call__(self, carry, window, positions, start, lengths, rows):
    x, cache, layer = carry
    cfg = self.cfg
    pre, post = cfg.block_norms != "post", cfg.block_norms != "pre"
    h = _norm(cfg, "input_norm")(x) if pre else x
    h, cache = Attention(cfg, name="attn")(h, positions, start, lengths, cache, layer, window, rows)
    if post:
      h = _norm(cfg, "attn_out_norm")(h)
    x = x + h
    h = MLP(cfg, name="mlp")(_norm(cfg, "post_attn_norm")(x) if pre else x)
    if post:
      h = _norm(cfg, "mlp_out_norm")(h)
    x = x + h
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
    if cfg.stacked_params:
      scanned = nn.scan(
        Block,
        variable_axes={"params": 0},
        split_rngs={"params": True},
        in_axes=(0, nn.broadcast, nn.broadcast, nn.broadcast, nn.broadcast),
        length=cfg.num_layers,
        metadata_params={nn.PARTITION_NAME: "layers"},
      )
      self.layers = scanned(cfg, name="layers")
    else:
      self.blocks = [Block(cfg, name=f"layers_{i}") for i in range(cfg.num_layers)]
    self.norm = _norm(cfg, "norm")
    if cfg.learned_positions:  # GPT-2
      self.embed_positions = nn.Embed(
        cfg.max_position_embeddings,
        cfg.hidden_size,
        dtype=cfg.jnp_dtype,
        param_dtype=cfg.jnp_dtype,
        embedding_init=_part(_init, (None, "embed")),
        name="embed_positions",
      )
    if not cfg.tie_word_embeddings:
      self.lm_head = _dense(cfg, cfg.vocab_size, ("embed", "vocab"), False, "lm_head")

  def __call__(self, tokens, start, lengths, cache: KVCache, rows=None):
    """tokens [b, C] int32; start [b]; lengths [b] (valid tokens per row).

    rows [b] int32: the cache rows these token rows belong to, so a forward can run on a sub-batch
    of the cache's B rows (None: all rows, b == B). Attention then reads only those rows.
    """
    C = tokens.shape[1]
    positions = start[:, None] + jnp.arange(C, dtype=start.dtype)[None, :]  # [B, C]
    x = self.embed(tokens)  # [B, C, E]
    if self.cfg.embed_scale:  # Gemma: the scale rounded to the activation dtype first, as HF does
      x = x * jnp.asarray(self.cfg.hidden_size**0.5, self.cfg.jnp_dtype)
    if self.cfg.learned_positions:  # padding may run past the table: clamp (its outputs are never used)
      x = x + self.embed_positions(jnp.minimum(positions, self.cfg.max_position_embeddings - 1))
    windows = jnp.asarray(self.cfg.layer_windows(), jnp.int32)  # [L] (0 = full attention)
    carry = (x, cache, jnp.zeros((), jnp.int32))
    if self.cfg.stacked_params:
      carry, _ = self.layers(carry, windows, positions, start, lengths, rows)
    elif self.cfg.scan_layers and not self.is_initializing():
      carry = self._scan_per_layer(carry, windows, positions, start, lengths, rows)
    else:  # unrolled (and init of per-layer params): static layer indices, each layer's own params
      for i, block in enumerate(self.blocks):
        carry, _ = block(carry, windows[i], positions, start, lengths, rows)
    x, cache, _ = carry
    return self.norm(x), cache

  def _scan_per_layer(self, carry, windows, positions, start, lengths, rows):
    """One scanned layer body over per-layer params (`layers_0`, ...): step l runs Block with every
    param a LayerStack at l, so each dot reads layer l's own array in place (model/layer_stack.py)."""
    cfg = self.cfg
    params = self.variables["params"]
    per_layer = [params[f"layers_{i}"] for i in range(cfg.num_layers)]
    block = Block(cfg, parent=None)  # applied functionally, not a submodule

    def step(carry, xs):
      window, index = xs
      variables = {"params": layer_stack.layer_stacks(per_layer, index)}
      return block.apply(variables, carry, window, positions, start, lengths, rows)

    carry, _ = jax.lax.scan(step, carry, (windows, jnp.arange(cfg.num_layers, dtype=jnp.int32)))
    return carry

  def logits(self, hidden):
    """hidden [B, C, E] -> float32 logits [B, C, V]."""
    if self.cfg.tie_word_embeddings:  # nn.Embed.attend's product, over matvec slices of the vocabulary
      table = self.embed.embedding.astype(self.cfg.jnp_dtype)  # [V, E]
      out = matvec.dot_out_in(hidden.astype(self.cfg.jnp_dtype), table, self.cfg.matvec_split)
    else:
      out = self.lm_head(hidden)
    out = out.astype(jnp.float32)
    if self.cfg.final_softcap is not None:  # Gemma 2 (in float32; HF caps in the activation dtype)
      out = jnp.tanh(out / self.cfg.final_softcap) * self.cfg.final_softcap
    return out

  def forward_logits(self, tokens, start, lengths, cache: KVCache, rows=None):
    hidden, cache = self(tokens, start, lengths, cache, rows)
    return self.logits(hidden), cache

"""Rotary position embeddings with Hugging Face's conventions (rotate-half; linear, llama3 and longrope
scaling; partial rotary).

Positions are absolute cache positions, so a right-padded batch gets exactly the positions an
unpadded single sequence would get in transformers.
"""

from __future__ import annotations

import math

import jax.numpy as jnp
import numpy as np

from model.config import RopeConfig


def inverse_frequencies(rope: RopeConfig, head_dim: int, long: bool = False) -> np.ndarray:
  """[rotary_dim // 2] float32, computed on the host once per model.

  long: longrope's frequencies past original_max_position_embeddings (else its short ones).
  """
  dim = rope.rotary_dim(head_dim)
  inv = 1.0 / (rope.theta ** (np.arange(0, dim, 2, dtype=np.float64) / dim))
  if rope.kind == "linear":
    inv = inv / rope.factor
  elif rope.kind == "llama3":
    old_len = rope.original_max_position_embeddings
    low_wavelen = old_len / rope.low_freq_factor
    high_wavelen = old_len / rope.high_freq_factor
    wavelen = 2 * math.pi / inv
    scaled = np.where(wavelen > low_wavelen, inv / rope.factor, inv)
    smooth = (old_len / wavelen - rope.low_freq_factor) / (rope.high_freq_factor - rope.low_freq_factor)
    smoothed = (1 - smooth) * scaled / rope.factor + smooth * scaled
    medium = (wavelen >= high_wavelen) & (wavelen <= low_wavelen)
    inv = np.where(medium, smoothed, scaled)
  elif rope.kind == "longrope":
    inv = inv / np.asarray(rope.long_factor if long else rope.short_factor, np.float64)
  return inv.astype(np.float32)


def longrope_frequencies(rope: RopeConfig, head_dim: int, seq_lens: jnp.ndarray) -> jnp.ndarray:
  """[B, 1, rotary_dim // 2]: each row's long or short frequencies, by its length seq_lens [B].

  As transformers, by the length a call reaches (max(position_ids) + 1 against
  original_max_position_embeddings), per row so that a row of a batch gets what it would get alone.
  Keys already cached keep the frequencies they were written with (as vLLM does); transformers'
  Phi-3 generate instead recomputes the whole cache with the long ones when a sequence first
  crosses original_max_position_embeddings, so a sequence that crosses it while decoding differs
  from transformers from there on (one that starts past it, or never reaches it, does not).
  """
  short = jnp.asarray(inverse_frequencies(rope, head_dim))
  long = jnp.asarray(inverse_frequencies(rope, head_dim, long=True))
  is_long = (seq_lens > rope.original_max_position_embeddings)[:, None, None]  # [B, 1, 1]
  return jnp.where(is_long, long, short)


def apply_rope(x: jnp.ndarray, positions: jnp.ndarray, inv_freq, scale: float = 1.0) -> jnp.ndarray:
  """x: [B, C, H, D]; positions: [B, C] int; inv_freq [R/2] or [B, 1, R/2] with R <= D.

  The first R dims rotate (partial rotary when R < D), the rest pass through; cos and sin are
  multiplied by scale (longrope's attention factor). Computed in float32, result in x.dtype.
  """
  rot = 2 * inv_freq.shape[-1]
  freqs = positions.astype(jnp.float32)[..., None] * jnp.asarray(inv_freq)  # [B, C, R/2]
  emb = jnp.concatenate([freqs, freqs], axis=-1)[:, :, None, :]  # [B, C, 1, R]
  cos, sin = jnp.cos(emb), jnp.sin(emb)
  if scale != 1.0:
    cos, sin = cos * scale, sin * scale
  xf = x.astype(jnp.float32)
  if rot < x.shape[-1]:
    xf, rest = xf[..., :rot], xf[..., rot:]
  half = rot // 2
  rotated = jnp.concatenate([-xf[..., half:], xf[..., :half]], axis=-1)
  out = xf * cos + rotated * sin
  if rot < x.shape[-1]:
    out = jnp.concatenate([out, rest], axis=-1)
  return out.astype(x.dtype)

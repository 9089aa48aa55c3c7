"""Decoder hyper-parameters, derived from a Hugging Face config.

One frozen dataclass per model: the student and the teacher each carry their own, so nothing in
the codebase reads a global config.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax.numpy as jnp

from model.errors import ModelLoadError

SUPPORTED_FAMILIES = ("llama", "mistral", "qwen2", "qwen3")

_DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16, "float16": jnp.float16}


@dataclasses.dataclass(frozen=True)
class RopeConfig:
  """Rotary embedding parameters (HF `rope_parameters`); only what changes the frequencies."""

  theta: float = 10000.0
  kind: str = "default"  # default | linear | llama3
  factor: float = 1.0
  low_freq_factor: float = 1.0
  high_freq_factor: float = 4.0
  original_max_position_embeddings: int = 8192


@dataclasses.dataclass(frozen=True)
class DecoderConfig:
  """Everything the Flax decoder needs to know about one Llama-family architecture."""

  family: str
  vocab_size: int
  hidden_size: int
  intermediate_size: int
  num_layers: int
  num_heads: int
  num_kv_heads: int
  head_dim: int
  max_position_embeddings: int
  rms_norm_eps: float = 1e-6
  rope: RopeConfig = RopeConfig()
  qkv_bias: bool = False
  o_bias: bool = False
  mlp_bias: bool = False
  qk_norm: bool = False
  tie_word_embeddings: bool = False
  # Per-layer sliding window (None = full attention); a tuple so the config stays hashable.
  sliding_windows: tuple[int | None, ...] = ()
  dtype: str = "float32"  # activation/param dtype name
  # Layers per iteration of the scan over layers: 1 = a rolled loop (one layer body in the program,
  # compile time flat in depth); num_layers = fully unrolled. Params and results are the same.
  scan_unroll: int = 1

  @property
  def jnp_dtype(self):
    return _DTYPES[self.dtype]

  def window(self, layer: int) -> int | None:
    return self.sliding_windows[layer] if self.sliding_windows else None

  def layer_windows(self) -> tuple[int, ...]:
    """Per-layer sliding window, 0 for full attention: traced data of the scanned layer body."""
    return tuple(self.window(i) or 0 for i in range(self.num_layers))

  def replace(self, **kw) -> "DecoderConfig":
    return dataclasses.replace(self, **kw)

  @classmethod
  def from_hf(cls, hf: Any, dtype: str = "float32") -> "DecoderConfig":
    """Reads a `transformers.PretrainedConfig`; unsupported architectures are a clear error."""
    family = getattr(hf, "model_type", None)
    if family not in SUPPORTED_FAMILIES:
      raise ModelLoadError(
        f"unsupported architecture model_type={family!r}; supported: {', '.join(SUPPORTED_FAMILIES)}. "
        "Convert the checkpoint to one of these families or add a variant in model/decoder.py."
      )
    if dtype not in _DTYPES:
      raise ModelLoadError(f"unknown dtype {dtype!r}; use one of {sorted(_DTYPES)}")
    act = getattr(hf, "hidden_act", "silu")
    if act not in ("silu", "swish"):
      raise ModelLoadError(f"unsupported hidden_act={act!r} (only silu/swish gated MLPs are implemented)")
    num_heads = hf.num_attention_heads
    head_dim = getattr(hf, "head_dim", None) or hf.hidden_size // num_heads
    num_kv = getattr(hf, "num_key_value_heads", None) or num_heads
    if num_heads % num_kv:
      raise ModelLoadError(
        f"num_attention_heads={num_heads} is not a multiple of num_key_value_heads={num_kv}"
      )
    return cls(
      family=family,
      vocab_size=hf.vocab_size,
      hidden_size=hf.hidden_size,
      intermediate_size=hf.intermediate_size,
      num_layers=hf.num_hidden_layers,
      num_heads=num_heads,
      num_kv_heads=num_kv,
      head_dim=head_dim,
      max_position_embeddings=getattr(hf, "max_position_embeddings", 4096),
      rms_norm_eps=getattr(hf, "rms_norm_eps", 1e-6),
      rope=_rope_from_hf(hf),
      qkv_bias=True if family == "qwen2" else bool(getattr(hf, "attention_bias", False)),
      o_bias=False if family in ("qwen2", "qwen3") else bool(getattr(hf, "attention_bias", False)),
      mlp_bias=bool(getattr(hf, "mlp_bias", False)),
      qk_norm=family == "qwen3",
      tie_word_embeddings=bool(getattr(hf, "tie_word_embeddings", False)),
      sliding_windows=_sliding_windows_from_hf(hf, family),
      dtype=dtype,
    )


def _rope_from_hf(hf: Any) -> RopeConfig:
  params = dict(getattr(hf, "rope_parameters", None) or {})
  legacy = getattr(hf, "rope_scaling", None) or {}
  for k, v in legacy.items():
    params.setdefault(k, v)
  theta = params.get("rope_theta", getattr(hf, "rope_theta", None) or 10000.0)
  kind = params.get("rope_type", params.get("type", "default")) or "default"
  if kind not in ("default", "linear", "llama3"):
    raise ModelLoadError(f"unsupported rope type {kind!r}; supported: default, linear, llama3")
  return RopeConfig(
    theta=float(theta),
    kind=kind,
    factor=float(params.get("factor", 1.0)),
    low_freq_factor=float(params.get("low_freq_factor", 1.0)),
    high_freq_factor=float(params.get("high_freq_factor", 4.0)),
    original_max_position_embeddings=int(params.get("original_max_position_embeddings", 8192)),
  )


def _sliding_windows_from_hf(hf: Any, family: str) -> tuple[int | None, ...]:
  window = getattr(hf, "sliding_window", None)
  n = hf.num_hidden_layers
  if family == "mistral":
    return (window,) * n if window else ()
  layer_types = getattr(hf, "layer_types", None)
  if family in ("qwen2", "qwen3") and getattr(hf, "use_sliding_window", False) and window and layer_types:
    return tuple(window if t == "sliding_attention" else None for t in layer_types)
  return ()

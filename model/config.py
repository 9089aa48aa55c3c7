"""Decoder hyper-parameters, derived from a Hugging Face config.

One frozen dataclass per model: the student and the teacher each carry their own, so nothing in
the codebase reads a global config.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import jax
import jax.numpy as jnp

from model.errors import ModelLoadError

SUPPORTED_FAMILIES = (
  *("llama", "mistral", "qwen2", "qwen3"),
  *("gemma", "gemma2", "phi3", "olmo", "olmo2", "gpt2"),
)

# HF activation name -> ours (the decoder's `activation`); gelu_new and gelu_pytorch_tanh are one formula.
ACTIVATIONS = {
  "silu": "silu",
  "swish": "silu",
  "gelu_pytorch_tanh": "gelu_tanh",
  "gelu_new": "gelu_tanh",
  "gelu": "gelu",
}
# Normalisation kinds (the decoder's `Norm`): where the weight applies and in which dtype.
NORMS = ("rms", "rms_f32", "gemma_rms", "layernorm", "layernorm_plain")

# How a model runs, not what it is: no Hugging Face config carries these (export ignores them).
RUNTIME_FIELDS = ("scan_layers", "layer_params", "fused_projections", "decode_block", "matvec_slices")
# How a scanned program holds its block params (DecoderConfig.layer_params); "auto" picks by backend.
LAYER_PARAMS = ("auto", "stacked", "per_layer")
# Whether q/k/v (and gate/up) are one weight each (DecoderConfig.fused_projections); "auto": with per-layer params.
FUSED_PROJECTIONS = ("auto", "fused", "separate")
# Slices of a one-row dot on a single CPU device (DecoderConfig.matvec_slices "auto"). On 2 cores the
# bench student's batch-1 step took 0.81x the plain-dot time with 4, 0.84x with 2, 0.90x with 8
# (experiments/bench/BENCHMARKS.md, "Matvecs on every core").
MATVEC_SLICES_CPU = 4

_DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16, "float16": jnp.float16}


@dataclasses.dataclass(frozen=True)
class RopeConfig:
  """Rotary embedding parameters (HF `rope_parameters`); only what changes the frequencies."""

  theta: float = 10000.0
  kind: str = "default"  # default | linear | llama3 | longrope
  factor: float = 1.0
  low_freq_factor: float = 1.0
  high_freq_factor: float = 4.0
  original_max_position_embeddings: int = 8192
  # longrope (Phi-3): per-frequency divisors, short up to original_max_position_embeddings, long past it;
  # cos and sin are multiplied by attention_factor.
  short_factor: tuple[float, ...] = ()
  long_factor: tuple[float, ...] = ()
  attention_factor: float = 1.0
  partial_rotary_factor: float = 1.0  # the first head_dim * this dims rotate, the rest pass through

  def rotary_dim(self, head_dim: int) -> int:
    return int(head_dim * self.partial_rotary_factor)


@dataclasses.dataclass(frozen=True)
class DecoderConfig:
  """Everything the Flax decoder needs to know about one architecture.

  The family fields below default to Llama; each other family sets the few it differs in, and the
  decoder branches on them in Python, so a Llama config traces exactly the Llama program.
  """

  family: str
  vocab_size: int
  hidden_size: int
  intermediate_size: int
  num_layers: int
  num_heads: int
  num_kv_heads: int
  head_dim: int
  max_position_embeddings: int
  rms_norm_eps: float = 1e-6  # epsilon of every norm (LayerNorm too)
  rope: RopeConfig = RopeConfig()
  qkv_bias: bool = False
  o_bias: bool = False
  mlp_bias: bool = False
  qk_norm: bool = False  # Qwen3: RMSNorm of each head of q and k (weight [head_dim])
  tie_word_embeddings: bool = False
  norm: str = "rms"  # one of NORMS
  activation: str = "silu"  # silu | gelu_tanh | gelu
  gated_mlp: bool = True  # False: down(act(up(x))), GPT-2's MLP
  # pre: sublayer inputs normed (Llama); pre_post: outputs too (Gemma 2); post: only outputs (OLMo 2).
  block_norms: str = "pre"
  qk_norm_full: bool = False  # OLMo 2: one norm over the whole projected q (and k), before the head split
  clip_qkv: float | None = None  # OLMo: q, k, v projections clipped to [-clip_qkv, clip_qkv]
  query_pre_attn_scalar: float | None = None  # Gemma 2: logits scaled by this ** -0.5 (not head_dim's)
  attn_softcap: float | None = None  # Gemma 2: attention logits -> cap * tanh(logits / cap)
  final_softcap: float | None = None  # Gemma 2: the same for the output logits
  embed_scale: bool = False  # Gemma: embeddings times sqrt(hidden_size), rounded to the activation dtype
  learned_positions: bool = False  # GPT-2: a learned absolute position embedding instead of rotary
  # Per-layer sliding window (None = full attention); a tuple so the config stays hashable.
  sliding_windows: tuple[int | None, ...] = ()
  dtype: str = "float32"  # activation/param dtype name
  # True: layers scanned (one layer body in the program, compile time flat in depth; params as
  # `layer_params` says). False: one param tree per layer, the layers unrolled in the program
  # (compile time grows with depth). Same results; model.lm converts between the layouts.
  scan_layers: bool = True
  # How the scanned program holds the block params. "stacked": one [L, ...] array per param under
  # `layers`; the scan slices layer l out of it every step, which XLA:CPU materialises as a copy of
  # every weight before its dot (a whole extra weight read and write per token). "per_layer": one
  # tree per layer (`layers_0`, ...), as the unrolled program's; the one scanned body picks layer l's
  # own array at each dot (`model.layer_stack`), which reads it in place. "auto": per_layer on CPU,
  # stacked elsewhere (`stacked_params`). Same results; model.lm converts between the layouts.
  layer_params: str = "auto"
  # "fused": each layer's q, k and v projections are one weight `attn/qkv_proj` [E, K, N/K + 2, D]
  # (each kv head's query heads, then its key and value) and gate/up one `mlp/gate_up_proj`
  # [E, 2, I], so a token runs 4 dots per layer instead of 7: at batch 1 on XLA:CPU each dot costs
  # more than its bytes (model/fused_projections.py). Both group by kv head / MLP column, so the
  # tensor-parallel rules split them as they split k/v and gate/up. "separate": HF's tensors one by
  # one. "auto": fused with per-layer params (the CPU default), separate when stacked
  # (`fuse_projections`). Checkpoints, export and the loaders' names are always separate; model.lm
  # converts.
  fused_projections: str = "auto"
  # One-token decode reads the cache in blocks of this many positions (or of gcd(T, this)), only up to
  # the batch's latest position (model.attention.decode_block, attend_blocks); 0: the whole buffer every
  # step. A speed knob: the same results up to float32 rounding of the online softmax.
  decode_block: int = 128
  # A one-row dot (batch-1 decode) runs batched over this many slices of its weight's outer dim, so
  # XLA:CPU spreads it over its threads instead of one core (model/matvec.py). None ("auto"):
  # MATVEC_SLICES_CPU when the run has one device and it is a CPU (with several, even in other
  # processes, arrays may be sharded and slicing them could move data), else 1 (plain dots); 1: off.
  # A speed knob: the same results up to float32 summation order.
  matvec_slices: int | None = None

  @property
  def stacked_params(self) -> bool:
    """True: block params stacked [L, ...] under `layers`; False: one tree per layer (`layers_i`)."""
    if self.layer_params not in LAYER_PARAMS:
      raise ValueError(f"layer_params={self.layer_params!r}; use one of {LAYER_PARAMS}")
    if not self.scan_layers:
      return False
    if self.layer_params == "auto":
      return jax.default_backend() != "cpu"
    return self.layer_params == "stacked"

  @property
  def fuse_projections(self) -> bool:
    """True: q/k/v and gate/up are each one param (`qkv_proj`, `gate_up_proj`); see fused_projections."""
    if self.fused_projections not in FUSED_PROJECTIONS:
      raise ValueError(f"fused_projections={self.fused_projections!r}; use one of {FUSED_PROJECTIONS}")
    if self.fused_projections == "auto":
      return not self.stacked_params
    return self.fused_projections == "fused"

  @property
  def matvec_split(self) -> int:
    """Slices of a one-row dot (model/matvec.py); see matvec_slices."""
    if self.matvec_slices is None:
      return MATVEC_SLICES_CPU if jax.default_backend() == "cpu" and jax.device_count() == 1 else 1
    if (
      isinstance(self.matvec_slices, bool)
      or not isinstance(self.matvec_slices, int)
      or self.matvec_slices < 1
    ):
      raise ValueError(f"matvec_slices={self.matvec_slices!r}; use None (auto) or a positive integer")
    return self.matvec_slices

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
    act_field = {"gemma2": "hidden_activation", "gpt2": "activation_function"}.get(family, "hidden_act")
    act = getattr(hf, act_field, None) or "silu"
    if act not in ACTIVATIONS:
      raise ModelLoadError(f"unsupported {act_field}={act!r}; supported: {', '.join(ACTIVATIONS)}")
    num_heads = hf.num_attention_heads
    head_dim = getattr(hf, "head_dim", None) or hf.hidden_size // num_heads
    num_kv = getattr(hf, "num_key_value_heads", None) or num_heads
    if num_heads % num_kv:
      raise ModelLoadError(
        f"num_attention_heads={num_heads} is not a multiple of num_key_value_heads={num_kv}"
      )
    bias = bool(getattr(hf, "attention_bias", False))
    cfg = cls(
      family=family,
      vocab_size=hf.vocab_size,
      hidden_size=hf.hidden_size,
      intermediate_size=getattr(hf, "intermediate_size", None) or 0,
      num_layers=hf.num_hidden_layers,
      num_heads=num_heads,
      num_kv_heads=num_kv,
      head_dim=head_dim,
      max_position_embeddings=getattr(hf, "max_position_embeddings", 4096),
      rms_norm_eps=getattr(hf, "rms_norm_eps", 1e-6),
      rope=_rope_from_hf(hf, head_dim),
      qkv_bias=True if family == "qwen2" else bias,
      o_bias=False if family in ("qwen2", "qwen3") else bias,
      mlp_bias=bool(getattr(hf, "mlp_bias", False)),
      qk_norm=family == "qwen3",
      tie_word_embeddings=bool(getattr(hf, "tie_word_embeddings", False)),
      sliding_windows=_sliding_windows_from_hf(hf, family),
      dtype=dtype,
      activation=ACTIVATIONS[act],
    )
    return cfg.replace(**_family_fields(hf, family))


def _family_fields(hf: Any, family: str) -> dict[str, Any]:
  """What a family changes relative to Llama (the DecoderConfig defaults)."""
  if family == "gemma":
    return dict(norm="gemma_rms", embed_scale=True)
  if family == "gemma2":
    if getattr(hf, "use_bidirectional_attention", None):
      raise ModelLoadError("gemma2 with use_bidirectional_attention=True is not a causal decoder")
    return dict(
      norm="gemma_rms",
      embed_scale=True,
      block_norms="pre_post",
      query_pre_attn_scalar=float(hf.query_pre_attn_scalar),
      attn_softcap=_float_or_none(getattr(hf, "attn_logit_softcapping", None)),
      final_softcap=_float_or_none(getattr(hf, "final_logit_softcapping", None)),
    )
  if family == "olmo":
    clip = getattr(hf, "clip_qkv", None)
    return dict(norm="layernorm_plain", rms_norm_eps=1e-5, clip_qkv=_float_or_none(clip))
  if family == "olmo2":
    return dict(norm="rms_f32", block_norms="post", qk_norm_full=True)
  if family == "gpt2":
    if not getattr(hf, "scale_attn_weights", True) or getattr(hf, "scale_attn_by_inverse_layer_idx", False):
      raise ModelLoadError(
        "gpt2 with scale_attn_weights=False or scale_attn_by_inverse_layer_idx=True is unsupported "
        "(attention logits are scaled by head_dim ** -0.5 only)"
      )
    return dict(
      norm="layernorm",
      rms_norm_eps=hf.layer_norm_epsilon,
      intermediate_size=hf.n_inner or 4 * hf.hidden_size,
      gated_mlp=False,
      learned_positions=True,
      qkv_bias=True,
      o_bias=True,
      mlp_bias=True,
    )
  return {}


def _float_or_none(x) -> float | None:
  return None if x is None else float(x)


def _rope_from_hf(hf: Any, head_dim: int) -> RopeConfig:
  params = dict(getattr(hf, "rope_parameters", None) or {})
  legacy = getattr(hf, "rope_scaling", None) or {}
  for k, v in legacy.items():
    params.setdefault(k, v)
  theta = params.get("rope_theta", getattr(hf, "rope_theta", None) or 10000.0)
  kind = params.get("rope_type", params.get("type", "default")) or "default"
  kind = "longrope" if kind == "su" else kind  # Phi-3's name before transformers renamed it
  if kind not in ("default", "linear", "llama3", "longrope"):
    raise ModelLoadError(f"unsupported rope type {kind!r}; supported: default, linear, llama3, longrope")
  rope = RopeConfig(
    theta=float(theta),
    kind=kind,
    factor=float(params.get("factor", 1.0)),
    low_freq_factor=float(params.get("low_freq_factor", 1.0)),
    high_freq_factor=float(params.get("high_freq_factor", 4.0)),
    original_max_position_embeddings=int(params.get("original_max_position_embeddings", 8192)),
    partial_rotary_factor=float(params.get("partial_rotary_factor", 1.0)),
  )
  rot = rope.rotary_dim(head_dim)
  if rot % 2 or rot <= 0:
    raise ModelLoadError(f"rotary dims head_dim * partial_rotary_factor = {rot} must be positive and even")
  if kind == "longrope":
    rope = _longrope(hf, params, rope, rot)
  return rope


def _longrope(hf: Any, params: dict, rope: RopeConfig, rot: int) -> RopeConfig:
  """LongRoPE's factors and its attention factor, defaulted as transformers does."""
  orig = params.get("original_max_position_embeddings") or getattr(hf, "original_max_position_embeddings", 0)
  short, long = params.get("short_factor"), params.get("long_factor")
  if not orig or short is None or long is None or len(short) != rot // 2 or len(long) != rot // 2:
    raise ModelLoadError(
      f"longrope needs original_max_position_embeddings and short_factor/long_factor of {rot // 2} "
      f"numbers each; got {orig!r}, {short!r}, {long!r}"
    )
  factor = params.get("factor") or hf.max_position_embeddings / orig
  attention_factor = params.get("attention_factor")
  if attention_factor is None:
    attention_factor = 1.0 if factor <= 1.0 else math.sqrt(1 + math.log(factor) / math.log(orig))
  return dataclasses.replace(
    rope,
    factor=float(factor),
    original_max_position_embeddings=int(orig),
    short_factor=tuple(float(x) for x in short),
    long_factor=tuple(float(x) for x in long),
    attention_factor=float(attention_factor),
  )


def _sliding_windows_from_hf(hf: Any, family: str) -> tuple[int | None, ...]:
  window = getattr(hf, "sliding_window", None)
  n = hf.num_hidden_layers
  if family in ("mistral", "phi3"):  # one window for every layer
    return (window,) * n if window else ()
  layer_types = getattr(hf, "layer_types", None)
  opted_in = family in ("qwen2", "qwen3") and getattr(hf, "use_sliding_window", False)
  per_layer = family == "gemma2" or opted_in
  if per_layer and window and layer_types:
    return tuple(window if t == "sliding_attention" else None for t in layer_types)
  return ()

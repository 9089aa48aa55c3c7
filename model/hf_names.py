"""Where each of our params lives in a Hugging Face checkpoint, per family (import and export share it).

Our tree is one layout for every family (model/decoder.py); HF names differ by family, and two
families fuse tensors we keep apart: Phi-3's qkv_proj and gate_up_proj, GPT-2's c_attn. A fused
tensor is split at import (each of our params is a column range of it) and concatenated back at
export, so the decoder and the tensor-parallel sharding rules see plain q/k/v and gate/up.
"""

from __future__ import annotations

import dataclasses

from model.config import DecoderConfig
from model.errors import ModelLoadError


@dataclasses.dataclass(frozen=True)
class TensorSource:
  """The HF tensor(s) one param is read from."""

  names: tuple[str, ...]  # one per layer for a scanned block param (layer 0 first), else one
  transpose: bool  # torch Linear stores [out, in]; we (and GPT-2's Conv1D) store [in, out]
  # (start, stop, width): the param is columns start:stop (our last axis) of a fused tensor `width` wide
  cols: tuple[int, int, int] | None = None


# Block params (our module path -> HF module) shared by the Llama-layout families.
_BLOCK = {
  ("input_norm",): "input_layernorm",
  ("attn", "q_proj"): "self_attn.q_proj",
  ("attn", "k_proj"): "self_attn.k_proj",
  ("attn", "v_proj"): "self_attn.v_proj",
  ("attn", "o_proj"): "self_attn.o_proj",
  ("attn", "q_norm"): "self_attn.q_norm",
  ("attn", "k_norm"): "self_attn.k_norm",
  ("mlp", "gate_proj"): "mlp.gate_proj",
  ("mlp", "up_proj"): "mlp.up_proj",
  ("mlp", "down_proj"): "mlp.down_proj",
}
# Our post_attn_norm is the pre-MLP norm: HF's post_attention_layernorm where the block has only
# pre-norms (Llama); with sublayer-output norms (Gemma 2, OLMo 2) that name is the attention output's.
_PRE_NORM_BLOCK = {("post_attn_norm",): "post_attention_layernorm"}
_OUT_NORM_BLOCK = {
  ("post_attn_norm",): "pre_feedforward_layernorm",
  ("attn_out_norm",): "post_attention_layernorm",
  ("mlp_out_norm",): "post_feedforward_layernorm",
}
_PHI3_FUSED = {
  ("attn", "q_proj"): "self_attn.qkv_proj",
  ("attn", "k_proj"): "self_attn.qkv_proj",
  ("attn", "v_proj"): "self_attn.qkv_proj",
  ("mlp", "gate_proj"): "mlp.gate_up_proj",
  ("mlp", "up_proj"): "mlp.gate_up_proj",
}
_GPT2_BLOCK = {
  ("input_norm",): "ln_1",
  ("post_attn_norm",): "ln_2",
  ("attn", "q_proj"): "attn.c_attn",
  ("attn", "k_proj"): "attn.c_attn",
  ("attn", "v_proj"): "attn.c_attn",
  ("attn", "o_proj"): "attn.c_proj",
  ("mlp", "up_proj"): "mlp.c_fc",
  ("mlp", "down_proj"): "mlp.c_proj",
}
_FUSED = {"self_attn.qkv_proj", "mlp.gate_up_proj", "attn.c_attn"}
_TOP = {"embed_tokens": "model.embed_tokens", "norm": "model.norm", "lm_head": "lm_head"}
_GPT2_TOP = {
  "embed_tokens": "transformer.wte",
  "embed_positions": "transformer.wpe",
  "norm": "transformer.ln_f",
  "lm_head": "lm_head",
}


def _fused_cols(cfg: DecoderConfig, module: tuple[str, ...]) -> tuple[int, int, int]:
  """Column range of a q/k/v or gate/up param inside its fused HF tensor."""
  q, kv, inter = cfg.num_heads * cfg.head_dim, cfg.num_kv_heads * cfg.head_dim, cfg.intermediate_size
  return {
    ("attn", "q_proj"): (0, q, q + 2 * kv),
    ("attn", "k_proj"): (q, q + kv, q + 2 * kv),
    ("attn", "v_proj"): (q + kv, q + 2 * kv, q + 2 * kv),
    ("mlp", "gate_proj"): (0, inter, 2 * inter),
    ("mlp", "up_proj"): (inter, 2 * inter, 2 * inter),
  }[module]


def hf_tensor_source(path: tuple[str, ...], cfg: DecoderConfig) -> TensorSource:
  """Our param path (without 'params'), e.g. ('layers', 'attn', 'q_proj', 'kernel') -> its HF source.

  A scanned block param ('layers', ...) stacks one HF tensor per layer along a leading axis.
  """
  gpt2 = cfg.family == "gpt2"
  head, leaf = path[0], path[-1]
  hf_leaf = "bias" if leaf == "bias" else "weight"  # kernel, scale, embedding -> weight
  if head != "layers":
    top = _GPT2_TOP if gpt2 else _TOP
    if head not in top or len(path) != 2:
      raise ModelLoadError(f"param {'/'.join(path)} has no Hugging Face name; is the tree a Decoder's?")
    return TensorSource((f"{top[head]}.{hf_leaf}",), transpose=head == "lm_head")
  module = tuple(path[1:-1])
  if gpt2:
    table, prefix = _GPT2_BLOCK, "transformer.h"
  else:
    norms = _PRE_NORM_BLOCK if cfg.block_norms == "pre" else _OUT_NORM_BLOCK
    table, prefix = {**_BLOCK, **norms}, "model.layers"
    if cfg.family == "phi3":
      table.update(_PHI3_FUSED)
  if module not in table:
    raise ModelLoadError(f"param {'/'.join(path)} has no Hugging Face name for family {cfg.family!r}")
  cols = _fused_cols(cfg, module) if table[module] in _FUSED else None
  names = tuple(f"{prefix}.{i}.{table[module]}.{hf_leaf}" for i in range(cfg.num_layers))
  return TensorSource(names, transpose=leaf == "kernel" and not gpt2, cols=cols)

"""Write Flax params as a local Hugging Face model directory (the inverse of model.hf_import).

Models we train ourselves leave through this door so that everything downstream (decode loop,
sweeps, transformers itself) loads them through the one real import path:

  export_hf(out_dir, cfg, params, tokenizer=tok_dir_or_object)
  python -m model.hf_export --src DIR --out DIR --dtype bfloat16   # re-store an HF dir in bf16

Writes config.json, model.safetensors (HF tensor names, kernels transposed back to [out, in],
Phi-3's and GPT-2's fused projections concatenated back) and the tokenizer files. Every supported
family exports (model.config.SUPPORTED_FAMILIES).
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import shutil
import sys
from pathlib import Path
from typing import Any

import jax.numpy as jnp
import numpy as np
from flax.traverse_util import flatten_dict

from model.config import RUNTIME_FIELDS, SUPPORTED_FAMILIES, DecoderConfig
from model.errors import ModelLoadError, UserError
from model.hf_names import hf_tensor_source
from model.lm import stack_layers

STORAGE_DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16}
# Files of a tokenizer directory that belong to the tokenizer (never weights or model config).
TOKENIZER_FILES = (
  "tokenizer.json",
  "tokenizer_config.json",
  "special_tokens_map.json",
  "tokenizer.model",
  "vocab.json",
  "merges.txt",
  "added_tokens.json",
  "chat_template.jinja",
)


class ExportError(UserError):
  """The params/config cannot be written as a Hugging Face directory as asked."""


def hf_config_from(cfg: DecoderConfig, tokenizer: Any = None):
  """A transformers config of cfg's family that maps back to exactly cfg (checked)."""
  import transformers

  if cfg.family not in SUPPORTED_FAMILIES:
    raise ExportError(f"cannot export family {cfg.family!r}; supported: {sorted(SUPPORTED_FAMILIES)}")
  kw = _gpt2_kwargs(cfg) if cfg.family == "gpt2" else _llama_layout_kwargs(cfg)
  if tokenizer is not None:
    for field in ("bos_token_id", "eos_token_id", "pad_token_id"):
      value = getattr(tokenizer, field, None)
      if value is not None:
        kw[field] = value
  hf = transformers.CONFIG_MAPPING[cfg.family](**kw)  # the family's config class
  back = DecoderConfig.from_hf(hf, dtype=cfg.dtype).replace(**{f: getattr(cfg, f) for f in RUNTIME_FIELDS})
  if back != cfg:
    diff = {
      f.name: (getattr(cfg, f.name), getattr(back, f.name))
      for f in dataclasses.fields(cfg)
      if getattr(cfg, f.name) != getattr(back, f.name)
    }
    raise ExportError(
      f"a {cfg.family} config cannot express this DecoderConfig; fields (wanted, got): {diff}. "
      "Pass hf_config= explicitly or change the model config."
    )
  return hf


_HF_ACTIVATION = {"silu": "silu", "gelu_tanh": "gelu_pytorch_tanh", "gelu": "gelu"}


def _llama_layout_kwargs(cfg: DecoderConfig) -> dict[str, Any]:
  """Config kwargs of every family but GPT-2; what a family cannot express shows up in the round-trip check."""
  rope = {"rope_type": cfg.rope.kind, "rope_theta": cfg.rope.theta}
  if cfg.rope.kind in ("linear", "llama3"):
    rope.update(
      factor=cfg.rope.factor,
      low_freq_factor=cfg.rope.low_freq_factor,
      high_freq_factor=cfg.rope.high_freq_factor,
      original_max_position_embeddings=cfg.rope.original_max_position_embeddings,
    )
  elif cfg.rope.kind == "longrope":
    rope.update(
      factor=cfg.rope.factor,
      original_max_position_embeddings=cfg.rope.original_max_position_embeddings,
      short_factor=list(cfg.rope.short_factor),
      long_factor=list(cfg.rope.long_factor),
      attention_factor=cfg.rope.attention_factor,
    )
  if cfg.rope.partial_rotary_factor != 1.0:
    rope["partial_rotary_factor"] = cfg.rope.partial_rotary_factor
  act_field = "hidden_activation" if cfg.family == "gemma2" else "hidden_act"
  kw = dict(
    vocab_size=cfg.vocab_size,
    hidden_size=cfg.hidden_size,
    intermediate_size=cfg.intermediate_size,
    num_hidden_layers=cfg.num_layers,
    num_attention_heads=cfg.num_heads,
    num_key_value_heads=cfg.num_kv_heads,
    head_dim=cfg.head_dim,
    max_position_embeddings=cfg.max_position_embeddings,
    rms_norm_eps=cfg.rms_norm_eps,
    rope_parameters=rope,
    tie_word_embeddings=cfg.tie_word_embeddings,
    **{act_field: _HF_ACTIVATION.get(cfg.activation, cfg.activation)},
  )
  if cfg.family in ("llama", "gemma", "gemma2", "olmo", "olmo2"):
    kw.update(attention_bias=cfg.qkv_bias)
  if cfg.family == "llama":
    kw.update(mlp_bias=cfg.mlp_bias)
  if cfg.family in ("mistral", "phi3"):
    kw["sliding_window"] = cfg.sliding_windows[0] if cfg.sliding_windows else None
  if cfg.family == "phi3" and cfg.rope.kind == "longrope":  # Phi3Config copies its own over the rope's
    kw["original_max_position_embeddings"] = cfg.rope.original_max_position_embeddings
  if cfg.family == "gemma2":
    windows = cfg.sliding_windows or (None,) * cfg.num_layers
    window = next((w for w in windows if w), None)
    kw.update(
      query_pre_attn_scalar=_int_if_whole(cfg.query_pre_attn_scalar),  # Gemma2Config wants an int
      attn_logit_softcapping=cfg.attn_softcap,
      final_logit_softcapping=cfg.final_softcap,
      sliding_window=window,
      layer_types=["sliding_attention" if w else "full_attention" for w in windows],
    )
  if cfg.family == "olmo":
    kw.update(clip_qkv=cfg.clip_qkv)
    del kw["rms_norm_eps"]  # OLMo's LayerNorm epsilon is fixed (1e-5)
  return kw


def _int_if_whole(x: float | None) -> float | int | None:
  return int(x) if x is not None and float(x).is_integer() else x


def _gpt2_kwargs(cfg: DecoderConfig) -> dict[str, Any]:
  return dict(
    vocab_size=cfg.vocab_size,
    n_embd=cfg.hidden_size,
    n_inner=cfg.intermediate_size,
    n_layer=cfg.num_layers,
    n_head=cfg.num_heads,
    n_positions=cfg.max_position_embeddings,
    layer_norm_epsilon=cfg.rms_norm_eps,
    activation_function={"gelu_tanh": "gelu_new"}.get(cfg.activation, cfg.activation),
    tie_word_embeddings=cfg.tie_word_embeddings,
  )


def _tensors(cfg: DecoderConfig, params, dtype) -> dict[str, jnp.ndarray]:
  """HF tensor name -> array in storage dtype (kernels transposed to HF's [out, in], fused tensors joined)."""
  tree = stack_layers(params if "params" in params else {"params": params}, cfg)["params"]
  out, parts, transposed = {}, {}, {}
  for path, arr in flatten_dict(tree).items():
    src = hf_tensor_source(path, cfg)
    arr = np.asarray(arr, np.float32)
    per_name = list(arr) if path[0] == "layers" else [arr]  # scanned params: one tensor per layer
    if len(per_name) != len(src.names):
      raise ExportError(
        f"param {'/'.join(path)} holds {len(per_name)} layers but the config has {len(src.names)}"
      )
    for name, a in zip(src.names, per_name):
      if src.cols is not None:  # a column range of a fused tensor: joined below
        parts.setdefault(name, []).append((src.cols, a))
        transposed[name] = src.transpose
        continue
      if name in out:
        raise ExportError(f"two params map to the HF tensor {name!r}; the param tree is not a Decoder's")
      out[name] = jnp.asarray(np.ascontiguousarray(a.T if src.transpose else a), dtype)
  for name, pieces in parts.items():
    pieces.sort(key=lambda p: p[0][0])
    spans = [cols for cols, _ in pieces]
    if [s for s, _, _ in spans] != [0] + [e for _, e, _ in spans[:-1]] or spans[-1][1] != spans[-1][2]:
      raise ExportError(f"params {spans} do not tile the fused HF tensor {name!r}")
    joined = np.concatenate([a for _, a in pieces], axis=-1)  # [in, width] or [width]
    out[name] = jnp.asarray(np.ascontiguousarray(joined.T if transposed[name] else joined), dtype)
  if cfg.tie_word_embeddings and "lm_head.weight" in out:
    raise ExportError("tie_word_embeddings=True but the params have an lm_head")
  return out


def _write_tokenizer(tokenizer: Any, out_dir: Path) -> None:
  if isinstance(tokenizer, (str, os.PathLike)):
    src = Path(tokenizer)
    found = [src / f for f in TOKENIZER_FILES if (src / f).exists()]
    if not found:
      raise ExportError(f"tokenizer directory {src} holds none of {TOKENIZER_FILES}")
    for f in found:
      shutil.copyfile(f, out_dir / f.name)
  else:
    tokenizer.save_pretrained(str(out_dir))


def _load_tokenizer_object(tokenizer: Any):
  if isinstance(tokenizer, (str, os.PathLike)):
    from model.hf_import import load_tokenizer

    return load_tokenizer(tokenizer)
  return tokenizer


def export_hf(
  out_dir: str | os.PathLike,
  cfg: DecoderConfig,
  params,
  tokenizer: Any = None,
  hf_config: Any = None,
  dtype: str = "float32",
) -> Path:
  """Writes an HF directory that `model.hf_import.load_model` reads back to the same params.

  tokenizer: a transformers tokenizer or a directory holding tokenizer files (copied verbatim).
  dtype: storage dtype of the weights ('float32' round-trips exactly; 'bfloat16' halves the size).
  """
  if dtype not in STORAGE_DTYPES:
    raise ExportError(f"unknown storage dtype {dtype!r}; choose one of {sorted(STORAGE_DTYPES)}")
  from safetensors.flax import save_file

  out_dir = Path(out_dir)
  out_dir.mkdir(parents=True, exist_ok=True)
  tok = _load_tokenizer_object(tokenizer) if tokenizer is not None else None
  if hf_config is None:
    hf_config = hf_config_from(cfg, tok)
  hf_config.dtype = dtype  # what transformers uses when asked for dtype="auto"
  tensors = _tensors(cfg, params, STORAGE_DTYPES[dtype])
  tmp = out_dir / "model.safetensors.tmp"
  save_file(tensors, str(tmp), metadata={"format": "pt"})
  os.replace(tmp, out_dir / "model.safetensors")  # never a half-written weights file
  hf_config.save_pretrained(str(out_dir))
  if tokenizer is not None:
    _write_tokenizer(tokenizer, out_dir)
  return out_dir


def _copy_other_files(src: Path, out: Path) -> None:
  """Side files of the source dir (e.g. notes on how it was trained) travel with the weights."""
  for f in src.iterdir():
    is_weights = f.name.endswith((".safetensors", ".safetensors.index.json", ".bin", ".pt", ".tmp"))
    if f.is_file() and not is_weights and not (out / f.name).exists():
      shutil.copyfile(f, out / f.name)


def main(argv=None) -> int:
  p = argparse.ArgumentParser(
    prog="python -m model.hf_export",
    description="Re-write a Hugging Face model directory (e.g. in bfloat16).",
  )
  p.add_argument("--src", required=True, help="HF model directory to read (config + safetensors + tokenizer)")
  p.add_argument("--out", required=True, help="directory to write")
  p.add_argument("--dtype", default="float32", choices=sorted(STORAGE_DTYPES))
  args = p.parse_args(argv)
  from model.hf_import import load_config, load_model

  try:
    lm = load_model(args.src)
    _, hf = load_config(args.src)
    export_hf(args.out, lm.cfg, lm.params, tokenizer=args.src, hf_config=hf, dtype=args.dtype)
    _copy_other_files(Path(args.src), Path(args.out))
  except (ModelLoadError, ExportError, OSError) as e:
    print(f"error: {e}", file=sys.stderr)
    return 2
  print(args.out)
  return 0


if __name__ == "__main__":
  sys.exit(main())

"""Write Flax params as a local Hugging Face model directory (the inverse of model.hf_import).

Models we train ourselves leave through this door so that everything downstream (decode loop,
sweeps, transformers itself) loads them through the one real import path:

  export_hf(out_dir, cfg, params, tokenizer=tok_dir_or_object)
  python -m model.hf_export --src DIR --out DIR --dtype bfloat16   # re-store an HF dir in bf16

Writes config.json, model.safetensors (HF tensor names, kernels transposed back to [out, in])
and the tokenizer files.
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

from model.config import DecoderConfig
from model.errors import ModelLoadError, UserError
from model.hf_import import hf_tensor_names

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

  classes = {
    "llama": transformers.LlamaConfig,
    "mistral": transformers.MistralConfig,
    "qwen2": transformers.Qwen2Config,
    "qwen3": transformers.Qwen3Config,
  }
  if cfg.family not in classes:
    raise ExportError(f"cannot export family {cfg.family!r}; supported: {sorted(classes)}")
  rope = {"rope_type": cfg.rope.kind, "rope_theta": cfg.rope.theta}
  if cfg.rope.kind != "default":
    rope.update(
      factor=cfg.rope.factor,
      low_freq_factor=cfg.rope.low_freq_factor,
      high_freq_factor=cfg.rope.high_freq_factor,
      original_max_position_embeddings=cfg.rope.original_max_position_embeddings,
    )
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
    hidden_act="silu",
  )
  if cfg.family in ("llama",):
    kw.update(attention_bias=cfg.qkv_bias, mlp_bias=cfg.mlp_bias)
  if cfg.family == "mistral" and cfg.sliding_windows:
    kw["sliding_window"] = cfg.sliding_windows[0]
  elif cfg.family == "mistral":
    kw["sliding_window"] = None
  if tokenizer is not None:
    for field in ("bos_token_id", "eos_token_id", "pad_token_id"):
      value = getattr(tokenizer, field, None)
      if value is not None:
        kw[field] = value
  hf = classes[cfg.family](**kw)
  back = DecoderConfig.from_hf(hf, dtype=cfg.dtype)
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


def _tensors(cfg: DecoderConfig, params, dtype) -> dict[str, jnp.ndarray]:
  """HF tensor name -> array in storage dtype (kernels transposed to HF's [out, in])."""
  tree = params["params"] if "params" in params else params
  out = {}
  for path, arr in flatten_dict(tree).items():
    names, transpose = hf_tensor_names(path, cfg.num_layers)
    arr = np.asarray(arr, np.float32)
    per_name = list(arr) if path[0] == "layers" else [arr]  # scanned params: one tensor per layer
    if len(per_name) != len(names):
      raise ExportError(
        f"param {'/'.join(path)} holds {len(per_name)} layers but the config has {len(names)}"
      )
    for name, a in zip(names, per_name):
      if name in out:
        raise ExportError(f"two params map to the HF tensor {name!r}; the param tree is not a Decoder's")
      out[name] = jnp.asarray(np.ascontiguousarray(a.T if transpose else a), dtype)
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

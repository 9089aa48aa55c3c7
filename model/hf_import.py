"""Load a local Hugging Face model directory into Flax params (no hub access, ever).

Reads config.json through transformers' AutoConfig, weights from model.safetensors or a sharded
model.safetensors.index.json, and the tokenizer through AutoTokenizer. Each tensor is validated
against the shape the config implies and placed straight into its target sharding.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax.traverse_util import flatten_dict, unflatten_dict

from model import sharding as sharding_lib
from model.config import DecoderConfig
from model.errors import ModelLoadError
from model.lm import LanguageModel, logical_param_axes, param_shapes


def hf_tensor_names(path: tuple[str, ...], num_layers: int) -> tuple[list[str], bool]:
  """Our param path (without 'params') -> (its HF tensor names, whether each is transposed).

  A scanned block param ('layers', ...) stacks one HF tensor per layer along a leading axis, so
  it maps to num_layers names (layer 0 first); every other param maps to one name.
  """
  head, *rest = path
  if head == "embed_tokens":
    return ["model.embed_tokens.weight"], False
  if head == "norm":
    return ["model.norm.weight"], False
  if head == "lm_head":
    return ["lm_head.weight"], True
  if head != "layers":
    raise ModelLoadError(f"param {'/'.join(path)} has no Hugging Face name; is the tree a Decoder's?")
  if rest[0] in ("input_norm", "post_attn_norm"):
    suffix = {"input_norm": "input_layernorm", "post_attn_norm": "post_attention_layernorm"}[
      rest[0]
    ] + ".weight"
    transpose = False
  else:
    group = {"attn": "self_attn", "mlp": "mlp"}[rest[0]]
    sub, leaf = rest[1], rest[2]
    if leaf == "scale":  # q_norm / k_norm
      suffix, transpose = f"{group}.{sub}.weight", False
    else:
      suffix, transpose = f"{group}.{sub}.{'weight' if leaf == 'kernel' else 'bias'}", leaf == "kernel"
  return [f"model.layers.{i}.{suffix}" for i in range(num_layers)], transpose


def _weight_files(model_dir: Path) -> dict[str, Path]:
  """Tensor name -> file holding it."""
  index = model_dir / "model.safetensors.index.json"
  single = model_dir / "model.safetensors"
  if index.exists():
    try:
      weight_map = json.loads(index.read_text())["weight_map"]
    except (json.JSONDecodeError, KeyError) as e:
      raise ModelLoadError(
        f"{index}: not a valid safetensors index ({e}); re-save the model with save_pretrained"
      )
    files = {name: model_dir / f for name, f in weight_map.items()}
    for f in set(files.values()):
      if not f.exists():
        raise ModelLoadError(f"{index} names weight file {f.name}, which is missing from {model_dir}")
    return files
  if single.exists():
    from safetensors import safe_open

    try:
      with safe_open(str(single), framework="numpy") as fh:
        return {name: single for name in fh.keys()}
    except Exception as e:  # safetensors raises its own error types for corrupt headers
      raise ModelLoadError(
        f"{single}: cannot read safetensors header ({e}); the file is truncated or corrupt"
      )
  raise ModelLoadError(
    f"{model_dir} has no model.safetensors or model.safetensors.index.json; "
    "save the model with save_pretrained(..., safe_serialization=True)"
  )


def _read_tensor(path: Path, name: str, dtype) -> np.ndarray:
  from safetensors import safe_open

  try:
    with safe_open(str(path), framework="flax") as fh:
      return np.asarray(fh.get_tensor(name).astype(dtype))
  except Exception as e:
    raise ModelLoadError(f"{path}: cannot read tensor {name!r} ({e}); the file is truncated or corrupt")


def load_config(model_dir: str | os.PathLike, dtype: str = "float32") -> tuple[DecoderConfig, Any]:
  """(our config, the transformers config)."""
  model_dir = Path(model_dir)
  if not model_dir.is_dir():
    raise ModelLoadError(
      f"model directory {str(model_dir)!r} does not exist (expected a Hugging Face "
      "directory with config.json, *.safetensors and tokenizer files)"
    )
  if not (model_dir / "config.json").exists():
    raise ModelLoadError(f"{model_dir} has no config.json; is it a Hugging Face model directory?")
  from transformers import AutoConfig

  try:
    hf_config = AutoConfig.from_pretrained(str(model_dir), local_files_only=True)
  except Exception as e:
    raise ModelLoadError(f"{model_dir}/config.json cannot be read by transformers: {e}")
  return DecoderConfig.from_hf(hf_config, dtype=dtype), hf_config


def load_params(model_dir: str | os.PathLike, cfg: DecoderConfig, mesh=None, rules=None):
  """Params tree {'params': ...} with every tensor checked against cfg and placed on the mesh."""
  model_dir = Path(model_dir)
  files = _weight_files(model_dir)
  shapes = param_shapes(cfg)
  shardings = None
  if mesh is not None:
    shardings = flatten_dict(sharding_lib.param_shardings(logical_param_axes(cfg), shapes, mesh, rules or ()))
  out = {}
  for path, spec in flatten_dict(shapes).items():
    names, transpose = hf_tensor_names(path[1:], cfg.num_layers)
    if names == ["lm_head.weight"] and names[0] not in files and cfg.tie_word_embeddings:
      names = ["model.embed_tokens.weight"]
    arrays = [_read_checked(model_dir, files, name, transpose, spec) for name in names]
    arr = arrays[0] if path[1] != "layers" else np.stack(arrays)  # scanned params: [L, ...]
    out[path] = jax.device_put(arr, shardings[path]) if shardings else jnp.asarray(arr)
  return unflatten_dict(out)


def _read_checked(model_dir: Path, files: dict[str, Path], name: str, transpose: bool, spec) -> np.ndarray:
  """One HF tensor in our layout, checked against the shape the config implies (per layer if stacked)."""
  if name not in files:
    raise ModelLoadError(
      f"{model_dir}: weight {name!r} is missing from the checkpoint "
      "(truncated download or a different architecture than config.json says)"
    )
  arr = _read_tensor(files[name], name, spec.dtype)
  if transpose:
    arr = arr.T
  want = spec.shape[1:] if name.startswith("model.layers.") else spec.shape
  if arr.shape != want:
    got = arr.T.shape if transpose else arr.shape
    hf_want = want[::-1] if transpose else want
    raise ModelLoadError(
      f"{model_dir}: weight {name!r} has shape {tuple(got)} but config.json implies "
      f"{tuple(hf_want)}; the weights do not belong to this config"
    )
  return arr


def load_tokenizer(model_dir: str | os.PathLike):
  from transformers import AutoTokenizer

  try:
    return AutoTokenizer.from_pretrained(str(model_dir), local_files_only=True)
  except Exception as e:
    raise ModelLoadError(
      f"{model_dir}: cannot load tokenizer files ({e}); the directory needs "
      "tokenizer.json or tokenizer_config.json with its vocabulary"
    )


def eos_token_ids(model_dir: str | os.PathLike, hf_config) -> tuple[int, ...]:
  """End-of-sequence ids declared by config.json and generation_config.json (int or list)."""
  ids: set[int] = set()

  def add(value):
    if isinstance(value, int):
      ids.add(value)
    elif isinstance(value, (list, tuple)):
      ids.update(v for v in value if isinstance(v, int))

  add(getattr(hf_config, "eos_token_id", None))
  gen = Path(model_dir) / "generation_config.json"
  if gen.exists():
    try:
      add(json.loads(gen.read_text()).get("eos_token_id"))
    except json.JSONDecodeError as e:
      raise ModelLoadError(f"{gen}: not valid JSON ({e.msg})")
  return tuple(sorted(ids))


def load_model(
  model_dir: str | os.PathLike,
  *,
  dtype: str = "float32",
  mesh=None,
  rules=None,
  with_tokenizer: bool = True,
  name: str | None = None,
) -> LanguageModel:
  """The whole import path: config -> params (sharded if a mesh is given) -> tokenizer."""
  cfg, hf_config = load_config(model_dir, dtype)
  params = load_params(model_dir, cfg, mesh, rules)
  tok = load_tokenizer(model_dir) if with_tokenizer else None
  return LanguageModel(
    cfg=cfg,
    params=params,
    tokenizer=tok,
    name=name or Path(model_dir).name,
    eos_token_ids=eos_token_ids(model_dir, hf_config),
  )

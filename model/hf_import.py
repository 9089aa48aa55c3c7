"""Load a local Hugging Face model directory into Flax params (no hub access, ever).

Reads config.json through transformers' AutoConfig, weights from model.safetensors or a sharded
model.safetensors.index.json, and the tokenizer through AutoTokenizer. Each tensor is validated
against the shape the config implies and placed straight into its target sharding.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Callable, Mapping

import jax
import jax.numpy as jnp
import numpy as np
from flax.traverse_util import flatten_dict, unflatten_dict

from model import gguf_import
from model import sharding as sharding_lib
from model.config import DecoderConfig
from model.errors import ModelLoadError
from model.hf_names import TensorSource, hf_tensor_source
from model.lm import LanguageModel, logical_param_axes, param_shapes, unstack_layers


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


def model_exists(path: str | os.PathLike) -> bool:
  """A model directory, or a .gguf file: what load_model accepts."""
  p = Path(path)
  return p.is_dir() or (p.suffix == ".gguf" and p.is_file())


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


def load_params(
  model_dir: str | os.PathLike,
  cfg: DecoderConfig,
  mesh=None,
  rules=None,
  tensors: Mapping[str, np.ndarray] | None = None,
):
  """Params tree {'params': ...} with every tensor checked against cfg and placed on the mesh.

  tensors: HF name -> array (a GGUF's, already dequantised) read instead of model_dir's safetensors.
  """
  model_dir = Path(model_dir)
  if tensors is None:
    files = _weight_files(model_dir)
    names, read = files, lambda name, dtype: _read_tensor(files[name], name, dtype)
  else:
    names, read = tensors, lambda name, dtype: np.asarray(tensors[name]).astype(dtype)
  host = {}
  for path, spec in flatten_dict(param_shapes(cfg.replace(scan_layers=True))).items():
    src = hf_tensor_source(path[1:], cfg)
    stacked = path[1] == "layers"
    want = spec.shape[1:] if stacked else spec.shape
    arrays = [_read_checked(model_dir, names, read, name, src, want, spec.dtype) for name in src.names]
    host[path] = np.stack(arrays) if stacked else arrays[0]  # scanned params: [L, ...]
  tree = unflatten_dict(host)
  if not cfg.scan_layers:
    tree = unstack_layers(tree, cfg.num_layers)
  return place_params(tree, cfg, mesh, rules)


def place_params(params, cfg: DecoderConfig, mesh=None, rules=None):
  """Host params -> device arrays, each on its mesh sharding (logical axes of cfg's layout and rules)."""
  if mesh is None:
    return jax.tree.map(jnp.asarray, params)
  shardings = sharding_lib.param_shardings(logical_param_axes(cfg), param_shapes(cfg), mesh, rules or ())
  return jax.tree.map(jax.device_put, params, shardings)


def _read_checked(
  model_dir: Path,
  files: Mapping[str, Any],
  read: Callable[[str, Any], np.ndarray],
  name: str,
  src: TensorSource,
  want: tuple[int, ...],
  dtype,
) -> np.ndarray:
  """One HF tensor in our layout (its column range if fused), checked against the shape cfg implies."""
  if name not in files and name.startswith("transformer.") and name[len("transformer.") :] in files:
    name = name[len("transformer.") :]  # GPT-2 checkpoints saved from GPT2Model carry no prefix
  if name not in files:
    raise ModelLoadError(
      f"{model_dir}: weight {name!r} is missing from the checkpoint "
      "(truncated download or a different architecture than config.json says)"
    )
  arr = read(name, dtype)
  if src.transpose:
    arr = arr.T
  full = want if src.cols is None else (*want[:-1], src.cols[2])  # a fused tensor is wider than our part
  if arr.shape != full:
    got = arr.T.shape if src.transpose else arr.shape
    hf_want = full[::-1] if src.transpose else full
    raise ModelLoadError(
      f"{model_dir}: weight {name!r} has shape {tuple(got)} but config.json implies "
      f"{tuple(hf_want)}; the weights do not belong to this config"
    )
  return arr if src.cols is None else np.ascontiguousarray(arr[..., src.cols[0] : src.cols[1]])


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
  scan_layers: bool = True,
) -> LanguageModel:
  """The whole import path: config -> params (sharded if a mesh is given) -> tokenizer.

  model_dir may be a llama.cpp .gguf file instead (model/gguf_import.py); its tensors are dequantised.
  scan_layers=False: one param tree per layer and an unrolled forward (see model/decoder.py).
  """
  gguf = gguf_import.is_gguf(model_dir)
  cfg, hf_config = (gguf_import.load_gguf_config if gguf else load_config)(model_dir, dtype)
  cfg = cfg.replace(scan_layers=scan_layers)
  tensors = gguf_import.load_gguf_tensors(model_dir, hf_config) if gguf else None
  params = load_params(model_dir, cfg, mesh, rules, tensors)
  tok = None
  if with_tokenizer:
    tok = gguf_import.load_gguf_tokenizer(model_dir) if gguf else load_tokenizer(model_dir)
  return LanguageModel(
    cfg=cfg,
    params=params,
    tokenizer=tok,
    name=name or Path(model_dir).name,
    eos_token_ids=eos_token_ids(model_dir, hf_config),
  )

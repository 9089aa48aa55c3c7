"""Load a local Hugging Face model directory into Flax params (no hub access, ever).

Reads config.json through transformers' AutoConfig, weights from model.safetensors or a sharded
model.safetensors.index.json, and the tokenizer through AutoTokenizer. Each tensor is validated
against the shape the config implies and streamed onto its target sharding, each host reading only
the slices its devices hold (model/param_stream.py).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from model import gguf_import
from model.config import DecoderConfig
from model.errors import ModelLoadError
from model.lm import LanguageModel
from model.param_stream import Weights, stream_params
from model.safetensors_reader import SafetensorsWeights


def _weight_files(model_dir: Path) -> list[Path]:
  """The safetensors files of a directory: the one file, or every file its index names."""
  index = model_dir / "model.safetensors.index.json"
  single = model_dir / "model.safetensors"
  if index.exists():
    try:
      weight_map = json.loads(index.read_text())["weight_map"]
    except (json.JSONDecodeError, KeyError) as e:
      raise ModelLoadError(
        f"{index}: not a valid safetensors index ({e}); re-save the model with save_pretrained"
      )
    files = sorted({model_dir / f for f in weight_map.values()})
    for f in files:
      if not f.exists():
        raise ModelLoadError(f"{index} names weight file {f.name}, which is missing from {model_dir}")
    return files
  if single.exists():
    return [single]
  raise ModelLoadError(
    f"{model_dir} has no model.safetensors or model.safetensors.index.json; "
    "save the model with save_pretrained(..., safe_serialization=True)"
  )


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


def safetensors_weights(model_dir: str | os.PathLike) -> SafetensorsWeights:
  """A directory's safetensors tensors (one file or a sharded index), read a slice at a time."""
  model_dir = Path(model_dir)
  return SafetensorsWeights(_weight_files(model_dir), origin=str(model_dir))


def load_params(
  model_dir: str | os.PathLike, cfg: DecoderConfig, mesh=None, rules=None, weights: Weights | None = None
):
  """Params tree {'params': ...}, every tensor checked against cfg and streamed onto its sharding.

  weights: the tensors to read (a GGUF file's) instead of model_dir's safetensors.
  """
  return stream_params(cfg, weights or safetensors_weights(model_dir), mesh, rules)


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
  weights = gguf_import.GGUFWeights(model_dir, hf_config) if gguf else None
  params = load_params(model_dir, cfg, mesh, rules, weights)
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

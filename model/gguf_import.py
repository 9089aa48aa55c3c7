"""Load a llama.cpp `.gguf` file as a model: a file path works wherever a model directory does.

Everything is read through transformers' own GGUF support (which uses the `gguf` package), so a
file loads here exactly as `from_pretrained(dir, gguf_file=name)` reads it: the config and tokenizer
from the file's metadata, the tensors dequantised, renamed to HF names and with llama.cpp's q/k
row permutation reversed. The tensors then go through the same `model.hf_names` mapping as
safetensors (`hf_import.load_params(..., tensors=...)`). transformers' GGUF tensor loader needs torch.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from model.config import SUPPORTED_FAMILIES, DecoderConfig
from model.errors import ModelLoadError


def is_gguf(path: str | os.PathLike) -> bool:
  return str(path).lower().endswith(".gguf")


def gguf_families() -> tuple[str, ...]:
  """Families both transformers' GGUF reader and our decoder support (what a .gguf may hold)."""
  try:
    from transformers.modeling_gguf_pytorch_utils import GGUF_SUPPORTED_ARCHITECTURES
  except ImportError:  # the reader needs the `gguf` package
    return ()
  return tuple(f for f in SUPPORTED_FAMILIES if f in GGUF_SUPPORTED_ARCHITECTURES)


def _unsupported(path: Path, what: str) -> ModelLoadError:
  return ModelLoadError(
    f"{path}: {what}; a .gguf file can hold one of these architectures: {', '.join(gguf_families())}"
  )


def _split(path: str | os.PathLike) -> tuple[Path, str]:
  """(parent directory, file name): how transformers is asked for a GGUF."""
  path = Path(path)
  if not path.is_file():
    raise ModelLoadError(f"GGUF file {str(path)!r} does not exist")
  try:
    import gguf  # noqa: F401
  except ImportError:
    raise ModelLoadError(f"{path}: reading .gguf files needs the `gguf` package (pip install gguf)")
  return path.parent, path.name


def load_gguf_config(path: str | os.PathLike, dtype: str = "float32") -> tuple[DecoderConfig, Any]:
  """(our config, the transformers config) from the file's metadata."""
  parent, name = _split(path)
  from transformers import AutoConfig

  try:
    hf_config = AutoConfig.from_pretrained(str(parent), gguf_file=name, local_files_only=True)
  except Exception as e:  # unknown architecture (ValueError), truncated or non-GGUF file, ...
    raise _unsupported(Path(path), f"transformers cannot read its config ({e})")
  family = getattr(hf_config, "model_type", None)
  if family not in gguf_families():
    raise _unsupported(Path(path), f"architecture {family!r} is not supported")
  return DecoderConfig.from_hf(hf_config, dtype=dtype), hf_config


def load_gguf_tensors(path: str | os.PathLike, hf_config) -> dict[str, np.ndarray]:
  """HF tensor name -> dequantised array (float32, or the file's float type), as transformers renames them."""
  path = Path(path)
  _split(path)
  try:
    import torch
    import transformers
    from transformers.modeling_gguf_pytorch_utils import load_gguf_checkpoint
  except ImportError as e:
    raise ModelLoadError(f"{path}: transformers' GGUF tensor loader needs torch ({e})")
  # The loader maps llama.cpp names to the parameter names of a model it is given: one without memory.
  with torch.device("meta"):
    skeleton = transformers.AutoModelForCausalLM.from_config(hf_config)
  try:
    tensors = load_gguf_checkpoint(str(path), return_tensors=True, model_to_load=skeleton)["tensors"]
  except Exception as e:
    raise ModelLoadError(f"{path}: cannot read its tensors ({e}); the file is truncated or corrupt")
  return {name: (t.float() if t.dtype == torch.bfloat16 else t).numpy() for name, t in tensors.items()}


def load_gguf_tokenizer(path: str | os.PathLike):
  parent, name = _split(path)
  from transformers import AutoTokenizer

  try:
    return AutoTokenizer.from_pretrained(str(parent), gguf_file=name, local_files_only=True)
  except Exception as e:
    raise ModelLoadError(f"{path}: transformers cannot build a tokenizer from its metadata ({e})")

"""Load a llama.cpp `.gguf` file as a model: a file path works wherever a model directory does.

Everything is read through transformers' own GGUF support (which uses the `gguf` package), so a
file loads here exactly as `from_pretrained(dir, gguf_file=name)` reads it: the config and tokenizer
from the file's metadata, the tensors dequantised, renamed to HF names and with llama.cpp's q/k
row permutation reversed. The tensors then go through the same `model.hf_names` mapping as
safetensors (`hf_import.load_params(..., weights=GGUFWeights(...))`), one tensor at a time.
transformers' GGUF name mapping needs torch (a model skeleton on the meta device).
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


class GGUFWeights:
  """A GGUF file's tensors by HF name, dequantised one tensor at a time (the `Weights` of param_stream).

  Names and llama.cpp's layout changes (q/k row permutation, GPT-2's transposes, Gemma's norm
  offsets) are transformers' own (`get_gguf_hf_weights_map`, its TensorProcessor per architecture),
  applied per tensor as its `load_gguf_checkpoint` applies them to all at once. Each tensor's bytes
  are memory mapped while it is decoded; the last tensor read stays decoded, since every device's
  slice of a layer comes from it.
  """

  def __init__(self, path: str | os.PathLike, hf_config):
    path = Path(path)
    _split(path)
    self.origin = str(path)
    try:
      import torch
      import transformers
      from gguf import GGUFReader
      from transformers.modeling_gguf_pytorch_utils import (
        TENSOR_PROCESSORS,
        TensorProcessor,
        get_gguf_hf_weights_map,
        read_field,
      )
    except ImportError as e:
      raise ModelLoadError(f"{path}: transformers' GGUF name mapping needs torch ({e})")
    try:
      self._reader = GGUFReader(str(path))
      architecture = read_field(self._reader, "general.architecture")[0]
    except Exception as e:
      raise ModelLoadError(f"{path}: cannot read its tensors ({e}); the file is truncated or corrupt")
    # The processors read HF config keys (num_attention_heads, ...): the config transformers parsed.
    self._processor = TENSOR_PROCESSORS.get(architecture, TensorProcessor)(config=hf_config.to_dict())
    self._path = path
    # The map is built from the parameter names of a model without memory.
    with torch.device("meta"):
      skeleton = transformers.AutoModelForCausalLM.from_config(hf_config)
    self._hf_names = get_gguf_hf_weights_map(skeleton, self._processor)
    self._tensors = {}  # HF name -> the file's tensor
    for t in self._reader.tensors:
      hf = self._hf_names.get(t.name) or _RENAMED_BY_PROCESSOR.get((architecture, t.name))
      if hf is not None:
        self._tensors[hf] = t
    self._last: tuple[str, np.ndarray] | None = None

  def __contains__(self, name: str) -> bool:
    return name in self._tensors

  def shape(self, name: str) -> tuple[int, ...]:
    return self._decoded(name).shape

  def read(self, name: str, index: tuple[slice, ...]) -> np.ndarray:
    return self._decoded(name)[index]

  def _decoded(self, name: str) -> np.ndarray:
    """The tensor dequantised and in HF layout (float32, or the file's float type)."""
    if self._last is None or self._last[0] != name:
      self._last = None  # let the previous tensor go before the next is decoded
      from gguf import dequantize

      t = self._tensors[name]
      sink = {"tensors": {}}  # where GPT-2's processor puts output.weight (its name comes back None)
      try:
        # The tensor's bytes mapped apart from the reader's map of the whole file, and let go with
        # the tensor: pages read through the reader's map would stay resident until the load ends.
        raw = np.memmap(self._path, t.data.dtype, mode="r", offset=t.data_offset, shape=t.data.shape)
        weights = dequantize(raw, t.tensor_type)
        out = self._processor.process(
          weights=weights, name=t.name, tensor_key_mapping=self._hf_names, parsed_parameters=sink
        )
      except Exception as e:
        raise ModelLoadError(
          f"{self.origin}: cannot read tensor {t.name!r} ({e}); the file is truncated or corrupt"
        )
      arr = out.weights if out.name is not None else sink["tensors"][name].numpy()
      self._last = (name, np.asarray(arr))
    return self._last[1]


# Tensors a TensorProcessor renames itself rather than through the name map: (architecture, GGUF
# name) -> HF name. GPT-2's output.weight clashes with attn_output.weight in the map's matching.
_RENAMED_BY_PROCESSOR = {("gpt2", "output.weight"): "lm_head.weight"}


def load_gguf_tokenizer(path: str | os.PathLike):
  parent, name = _split(path)
  from transformers import AutoTokenizer

  try:
    return AutoTokenizer.from_pretrained(str(parent), gguf_file=name, local_files_only=True)
  except Exception as e:
    raise ModelLoadError(f"{path}: transformers cannot build a tokenizer from its metadata ({e})")

"""Slices of the tensors of a safetensors directory, read from the file without reading the rest.

The safetensors layout is an 8-byte header length, a JSON header (name -> dtype, shape, byte
range) and the raw data. A read maps only that tensor's bytes (np.memmap) and copies the slice a
device holds, so a host reads only what its devices need and the mapped pages are let go as soon as
the slice is copied. Parsed here rather than through `safe_open(framework="numpy")`, which cannot
return bfloat16 (numpy has no such type; ml_dtypes does).
"""

from __future__ import annotations

import dataclasses
import json
import struct
from pathlib import Path

import ml_dtypes
import numpy as np

from model.errors import ModelLoadError

DTYPES = {
  "F64": np.float64,
  "F32": np.float32,
  "F16": np.float16,
  "BF16": ml_dtypes.bfloat16,
  "F8_E4M3": ml_dtypes.float8_e4m3fn,
  "F8_E5M2": ml_dtypes.float8_e5m2,
  "I64": np.int64,
  "I32": np.int32,
  "I16": np.int16,
  "I8": np.int8,
  "U8": np.uint8,
  "BOOL": np.bool_,
}


@dataclasses.dataclass(frozen=True)
class TensorEntry:
  """Where one tensor's bytes lie in its file."""

  path: Path
  dtype: np.dtype
  shape: tuple[int, ...]
  offset: int  # from the start of the file


def read_header(path: Path) -> dict[str, TensorEntry]:
  """Tensor name -> entry, checked against the file's size (a truncated file is one clear error)."""
  corrupt = f"{path}: cannot read safetensors header ({{}}); the file is truncated or corrupt"
  try:
    size = path.stat().st_size
    with open(path, "rb") as f:
      (n,) = struct.unpack("<Q", f.read(8))
      if n > size - 8:
        raise ValueError(f"header of {n} bytes in a file of {size}")
      header = json.loads(f.read(n))
  except (OSError, ValueError, struct.error) as e:
    raise ModelLoadError(corrupt.format(e))
  entries = {}
  for name, info in header.items():
    if name == "__metadata__":
      continue
    try:
      begin, end = info["data_offsets"]
      dtype, shape = np.dtype(DTYPES[info["dtype"]]), tuple(int(d) for d in info["shape"])
    except (KeyError, TypeError, ValueError) as e:
      raise ModelLoadError(corrupt.format(f"tensor {name!r}: {e}"))
    if end - begin != dtype.itemsize * int(np.prod(shape)) or 8 + n + end > size:
      raise ModelLoadError(
        f"{path}: cannot read tensor {name!r} (bytes {begin}..{end} past the data or the wrong size); "
        "the file is truncated or corrupt"
      )
    entries[name] = TensorEntry(path, dtype, shape, 8 + n + begin)
  return entries


class SafetensorsWeights:
  """The tensors of one or more safetensors files, read a slice at a time."""

  def __init__(self, files: list[Path], origin: str):
    self.origin = origin
    self._entries: dict[str, TensorEntry] = {}
    for f in files:
      self._entries.update(read_header(f))

  def __contains__(self, name: str) -> bool:
    return name in self._entries

  def shape(self, name: str) -> tuple[int, ...]:
    return self._entries[name].shape

  def read(self, name: str, index: tuple[slice, ...]) -> np.ndarray:
    """A view of tensor[index] on its file's bytes: valid until the caller copies it."""
    e = self._entries[name]
    if not e.shape or 0 in e.shape:  # nothing to map
      return np.fromfile(e.path, e.dtype, count=int(np.prod(e.shape)), offset=e.offset).reshape(e.shape)[
        index
      ]
    mapped = np.memmap(e.path, e.dtype, mode="r", offset=e.offset, shape=e.shape)
    return mapped[index]

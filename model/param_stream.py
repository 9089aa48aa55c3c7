"""Params straight from a checkpoint's tensors into their mesh shardings, one layer at a time.

Each device's block of each param is read from the checkpoint as a slice (`Weights.read`), cast to
the target dtype and laid out as our tree wants it (transposed, a fused tensor's columns) in one
copy, then placed with `jax.make_array_from_callback`: a host reads only the slices its own devices
hold. A scanned param ([L, ...]) is allocated once on its sharding and written a layer at a time by
a donated in-place update, never stacked after the fact, so host memory peaks near the params the
host holds plus one tensor (the old path held every tensor, then a stacked copy: 2.2-4.3x).
"""

from __future__ import annotations

import functools
from typing import Callable, Protocol

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from flax.traverse_util import flatten_dict, unflatten_dict
from jax.sharding import NamedSharding, PartitionSpec, Sharding, SingleDeviceSharding

from model import fused_projections
from model import sharding as sharding_lib
from model.config import DecoderConfig
from model.errors import ModelLoadError
from model.hf_names import TensorSource, hf_tensor_source
from model.lm import abstract_params

Index = tuple[slice, ...]


class Weights(Protocol):
  """A checkpoint's tensors by Hugging Face name, in HF layout, read a slice at a time."""

  origin: str  # what error messages name (a directory or a file)

  def __contains__(self, name: str) -> bool: ...

  def shape(self, name: str) -> tuple[int, ...]: ...

  def read(self, name: str, index: Index) -> np.ndarray:
    """tensor[index]; may be a view the caller must copy before the next read."""
    ...


def target_shardings(
  cfg: DecoderConfig, mesh=None, rules=(), abstract=None
) -> dict[tuple[str, ...], Sharding]:
  """Flat param path -> where it goes: its mesh sharding by the rules, or the default device.

  abstract: cfg's abstract_params, where the caller has them (tracing the init takes ~1.5 s).
  """
  abstract = abstract_params(cfg) if abstract is None else abstract
  shapes = nn.unbox(abstract)
  if mesh is None:
    one = SingleDeviceSharding(jax.devices()[0])
    return {path: one for path in flatten_dict(shapes)}
  tree = sharding_lib.param_shardings(nn.get_partition_spec(abstract), shapes, mesh, rules or ())
  return flatten_dict(tree)


def stream_params(cfg: DecoderConfig, weights: Weights, mesh=None, rules=()):
  """Params tree {'params': ...} in cfg's layout (scanned or not) and dtype, each leaf on its sharding.

  Every tensor name is checked to exist before anything is read; each tensor's shape is checked
  against the one cfg implies when it is first read. A fused projection (cfg.fuse_projections,
  model/fused_projections.py) is built per layer from HF's separate tensors, each device's block
  read from its parts (`_fused_read`); stacked and fused (not a default) is read separate, then
  fused on the devices.
  """
  if cfg.fuse_projections and cfg.stacked_params:
    separate = cfg.replace(fused_projections="separate")
    return _fuse_stacked(stream_params(separate, weights, mesh, rules), cfg, mesh, rules)
  abstract = abstract_params(cfg)
  shapes = flatten_dict(nn.unbox(abstract))
  shardings = target_shardings(cfg, mesh, rules, abstract)
  fused = {path for path in shapes if path[-2] in _FUSED_PARTS}
  sources = {path: _source(path[1:], cfg, weights) for path in shapes if path not in fused}
  # Whole tensors (embeddings, lm_head) first, while nothing else is held: each is built from a
  # host block as large as the device's share of it, the largest transient of the load. Block
  # params ('layers' stacked, or 'layers_i' per layer) after.
  order = sorted(shapes, key=lambda p: p[1].startswith("layers"))
  out = {}
  for path in order:
    spec = shapes[path]
    if path in fused:
      out[path] = _device_array(spec.shape, shardings[path], _fused_read(path[1:], spec, cfg, weights))
      continue
    names, src = sources[path]
    if path[1] == "layers":  # scanned: [L, ...], one HF tensor per layer
      read = functools.partial(_read_block, weights, src, spec.shape[1:])
      out[path] = _stacked_array(spec.shape, spec.dtype, shardings[path], names, read)
    else:
      read = functools.partial(_read_block, weights, src, spec.shape, names[0], dtype=spec.dtype)
      out[path] = _device_array(spec.shape, shardings[path], read)
  return unflatten_dict(out)


# A fused projection's separate parts, each with its width along the fused axis (None: N / K).
_FUSED_PARTS = {
  "qkv_proj": (("q_proj", None), ("k_proj", 1), ("v_proj", 1)),
  "gate_up_proj": (("gate_proj", 1), ("up_proj", 1)),
}


def _fused_read(path: tuple[str, ...], spec, cfg: DecoderConfig, weights: Weights):
  """index -> the block of one layer's fused param (path: ('layers_i', module, fused name, leaf))
  read from its separate HF tensors, each read once per block. qkv [.., K, R + 2, D]: part p's
  heads of kv heads k0:k1 are contiguous columns of its separate param; gate_up [.., 2, I]: stacked."""
  layer, module, fused_name, leaf = path
  K, D = cfg.num_kv_heads, cfg.head_dim
  parts = []
  for name, width in _FUSED_PARTS[fused_name]:
    width = cfg.num_heads // K if width is None else width
    names, src = _source((layer, module, name, leaf), cfg, weights)
    if fused_name == "qkv_proj":
      separate = (*spec.shape[:-3], K * width * D)  # kernel [E, K * width * D], bias [K * width * D]
    else:
      separate = (*spec.shape[:-2], spec.shape[-1])  # kernel [E, I], bias [I]
    parts.append((width, functools.partial(_read_block, weights, src, separate, names[0], dtype=spec.dtype)))

  def read(index: Index) -> np.ndarray:
    """The block, each part read straight into its place (in flight: the block alone)."""
    bounds = [s.indices(n)[:2] for s, n in zip(index, spec.shape)]
    out = np.empty([hi - lo for lo, hi in bounds], spec.dtype)
    if fused_name == "gate_up_proj":
      *lead, (j0, j1), cols = bounds
      lead = tuple(slice(*b) for b in lead)
      for j in range(j0, j1):
        parts[j][1]((*lead, slice(*cols)), out=out[..., j - j0, :])
      return out
    *lead, (k0, k1), (r0, r1), (d0, d1) = bounds
    lead = tuple(slice(*b) for b in lead)
    lo = 0
    for width, rd in parts:
      a, b = max(r0, lo), min(r1, lo + width)
      for k in range(k0, k1) if a < b else ():  # kv head k's heads a..b of this part
        if (d0, d1) == (0, D):  # whole heads: one column range
          cols = slice((k * width + a - lo) * D, (k * width + b - lo) * D)
          rd((*lead, cols), out=out[..., k - k0, a - r0 : b - r0, :].reshape(*out.shape[:-3], -1))
        else:  # head_dim split (kv heads too few for the mesh): each head's columns d0:d1
          for h in range(a - lo, b - lo):
            cols = slice((k * width + h) * D + d0, (k * width + h) * D + d1)
            rd((*lead, cols), out=out[..., k - k0, lo + h - r0, :])
      lo += width
    return out

  return read


def _fuse_stacked(params, cfg: DecoderConfig, mesh, rules):
  """Stacked params with separate projections -> fused, on the devices, into their shardings."""
  shardings = unflatten_dict(target_shardings(cfg, mesh, rules))["params"]
  tree = dict(params["params"])
  del params  # the caller holds no reference: `tree` is the only one to the separate block
  fuse = jax.jit(functools.partial(fused_projections.fuse, cfg=cfg), out_shardings=shardings["layers"])
  tree["layers"] = fuse(tree.pop("layers"))
  return {"params": tree}


def _source(
  path: tuple[str, ...], cfg: DecoderConfig, weights: Weights
) -> tuple[tuple[str, ...], TensorSource]:
  """(the HF names this param is read from: one per layer if stacked, else one; how to read them)."""
  head = path[0]
  if head.startswith("layers_"):  # one layer of an unscanned tree
    src = hf_tensor_source(("layers", *path[1:]), cfg)
    names = (src.names[int(head[len("layers_") :])],)
  else:
    src = hf_tensor_source(path, cfg)
    names = src.names
  return tuple(_resolve(weights, n) for n in names), src


def _resolve(weights: Weights, name: str) -> str:
  if name not in weights and name.startswith("transformer.") and name[len("transformer.") :] in weights:
    return name[len("transformer.") :]  # GPT-2 checkpoints saved from GPT2Model carry no prefix
  if name not in weights:
    raise ModelLoadError(
      f"{weights.origin}: weight {name!r} is missing from the checkpoint "
      "(truncated download or a different architecture than config.json says)"
    )
  return name


def _read_block(
  weights: Weights,
  src: TensorSource,
  want: tuple[int, ...],
  name: str,
  index: Index,
  dtype,
  out: np.ndarray | None = None,
) -> np.ndarray:
  """Our param's block `index` (over its one-tensor shape `want`) from HF tensor `name`: one copy."""
  full = want if src.cols is None else (*want[:-1], src.cols[2])  # a fused tensor is wider than our part
  hf_full = full[::-1] if src.transpose else full
  got = tuple(weights.shape(name))
  if got != tuple(hf_full):
    raise ModelLoadError(
      f"{weights.origin}: weight {name!r} has shape {got} but config.json implies "
      f"{tuple(hf_full)}; the weights do not belong to this config"
    )
  bounds = [slice(*s.indices(d)[:2]) for s, d in zip(index, want)]
  if src.cols is not None:  # our columns are an offset range of the fused tensor's
    last = bounds[-1]
    bounds[-1] = slice(last.start + src.cols[0], last.stop + src.cols[0])
  hf_index = tuple(bounds[::-1] if src.transpose else bounds)
  try:
    part = weights.read(name, hf_index)
    if out is not None:  # straight into the caller's block (a fused param's part of it)
      if src.transpose:
        return _transposed(part, dtype, out=out)
      out[...] = part
      return out
    return _transposed(part, dtype) if src.transpose else np.array(part, dtype=dtype, order="C")
  except (OSError, ValueError) as e:
    raise ModelLoadError(
      f"{weights.origin}: cannot read tensor {name!r} ({e}); the file is truncated or corrupt"
    )


def _transposed(part: np.ndarray, dtype, rows: int = 16, out: np.ndarray | None = None) -> np.ndarray:
  """part.T [in, out] as a C array of dtype, from part [out, in] a band of rows at a time: a band's
  transpose stays in cache (bands of 16 rows 1.5x faster than of 128 on an [8960, 1536] kernel;
  bands of 128, 2.6x faster than numpy's whole strided copy on a [4864, 896] one)."""
  if part.ndim != 2:
    if out is None:
      return np.array(part.T, dtype=dtype, order="C")
    out[...] = part.T
    return out
  out = np.empty(part.shape[::-1], dtype) if out is None else out
  for i in range(0, part.shape[0], rows):
    out[:, i : i + rows] = part[i : i + rows].T
  return out


def _device_array(shape, sharding: Sharding, read: Callable[[Index], np.ndarray]) -> jax.Array:
  """A global array from each addressable device's block; devices holding the same block share one read."""
  blocks: dict[tuple, np.ndarray] = {}

  def block(index: Index) -> np.ndarray:
    key = tuple(s.indices(d) for s, d in zip(index, shape))
    if key not in blocks:
      blocks[key] = read(index)
    return blocks[key]

  return jax.make_array_from_callback(tuple(shape), sharding, block)


def _stacked_array(shape, dtype, sharding: Sharding, names, read) -> jax.Array:
  """[L, ...] allocated once on its sharding, layer l written in place from HF tensor names[l]."""
  layer_sharding = _layer_sharding(sharding, len(shape))
  if layer_sharding is None:  # a rule split the layer axis: build it whole, a layer at a time on the host
    return _device_array(shape, sharding, lambda idx: _read_layers(names, read, idx, dtype))
  stack = _zeros(tuple(shape), jnp.dtype(dtype), sharding)
  for layer, name in enumerate(names):
    piece = _device_array(shape[1:], layer_sharding, lambda idx, n=name: read(n, idx, dtype))
    stack = _write_layer(stack, piece, layer)
  if not stack.sharding.is_equivalent_to(sharding, len(shape)):
    stack = jax.device_put(stack, sharding)
  return stack


def _read_layers(names, read, index: Index, dtype) -> np.ndarray:
  layers = range(*index[0].indices(len(names)))
  block = None
  for i, layer in enumerate(layers):
    part = read(names[layer], index[1:], dtype)
    if block is None:
      block = np.empty((len(layers), *part.shape), part.dtype)
    block[i] = part
  return block


def _layer_sharding(sharding: Sharding, ndim: int) -> Sharding | None:
  """The sharding of one layer of a stacked param; None where the layer axis itself is split."""
  if isinstance(sharding, NamedSharding):
    spec = tuple(sharding.spec) + (None,) * (ndim - len(sharding.spec))
    if spec[0] is not None:
      return None
    return NamedSharding(sharding.mesh, PartitionSpec(*spec[1:]))
  if isinstance(sharding, SingleDeviceSharding):
    return sharding
  return None


def _zeros(shape: tuple[int, ...], dtype, sharding: Sharding) -> jax.Array:
  return _zeros_fn(shape, jnp.dtype(dtype), sharding)()


@functools.lru_cache(maxsize=64)
def _zeros_fn(shape: tuple[int, ...], dtype, sharding: Sharding):
  """One compiled zeros per shape and sharding (a model has a dozen stacked shapes)."""
  return jax.jit(lambda: jnp.zeros(shape, dtype), out_shardings=sharding)


@functools.partial(jax.jit, donate_argnums=0)
def _write_layer(stack: jax.Array, layer: jax.Array, i) -> jax.Array:
  """stack [L, ...] with stack[i] = layer [...], in place (the old stack is donated)."""
  return jax.lax.dynamic_update_index_in_dim(stack, layer, i, 0)

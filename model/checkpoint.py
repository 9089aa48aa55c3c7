"""Save/restore converted params with orbax, restoring straight into the requested sharding."""

from __future__ import annotations

import os
from pathlib import Path

import jax
import orbax.checkpoint as ocp

from model import sharding as sharding_lib
from model.config import DecoderConfig
from model.errors import ModelLoadError
from model.lm import logical_param_axes, param_shapes


def save_params(path: str | os.PathLike, params) -> Path:
  path = Path(path).absolute()
  with ocp.StandardCheckpointer() as ckptr:
    ckptr.save(path, params, force=True)
  return path


def restore_params(path: str | os.PathLike, cfg: DecoderConfig, mesh=None, rules=None):
  """Restores into the shapes cfg implies; each array lands directly in its mesh sharding."""
  path = Path(path).absolute()
  if not path.exists():
    raise ModelLoadError(f"checkpoint {path} does not exist")
  shapes = param_shapes(cfg)
  if mesh is not None:
    shardings = sharding_lib.param_shardings(logical_param_axes(cfg), shapes, mesh, rules or ())
    target = jax.tree.map(
      lambda s, sh: jax.ShapeDtypeStruct(s.shape, s.dtype, sharding=sh), shapes, shardings
    )
  else:
    target = shapes
  with ocp.StandardCheckpointer() as ckptr:
    try:
      return ckptr.restore(path, target)
    except (ValueError, KeyError) as e:
      raise ModelLoadError(f"checkpoint {path} does not match the model config: {e}")

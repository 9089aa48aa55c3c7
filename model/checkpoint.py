"""Save/restore converted params with orbax, restoring straight into the requested sharding."""

from __future__ import annotations

import os
from pathlib import Path

import jax
import numpy as np
import orbax.checkpoint as ocp
from flax.traverse_util import flatten_dict, unflatten_dict

from model import sharding as sharding_lib
from model.config import DecoderConfig
from model.errors import ModelLoadError
from model.hf_import import place_params
from model.lm import logical_param_axes, param_shapes, stack_layers, unstack_layers


def save_params(path: str | os.PathLike, params) -> Path:
  path = Path(path).absolute()
  with ocp.StandardCheckpointer() as ckptr:
    ckptr.save(path, params, force=True)
  return path


def restore_training_params(step_dir: str | os.PathLike, cfg: DecoderConfig, mesh=None, rules=None):
  """The params of one step of a training run's CheckpointManager ({params, opt_state, ...}).

  Restored without a target (orbax reads the tree it saved), then checked leaf by leaf against the
  shapes `cfg` implies, cast to its dtype and placed on the mesh. The optimizer state is read too
  and dropped: fine for analysis-sized students, ~3x the params in host memory while loading.
  """
  path = Path(step_dir).absolute() / "default"
  if not path.exists():
    raise ModelLoadError(f"{step_dir} is not a CheckpointManager step (no 'default' item)")
  with ocp.StandardCheckpointer() as ckptr:
    state = ckptr.restore(path)
  if not isinstance(state, dict) or "params" not in state:
    raise ModelLoadError(
      f"{step_dir}: the checkpoint holds no 'params' (saved by experiments.training.train?)"
    )
  # Checked in the stacked layout, whichever one training ran (and saved) in.
  want = flatten_dict(param_shapes(cfg.replace(scan_layers=True, layer_params="stacked")))
  got = flatten_dict(stack_layers(state["params"]))
  if set(want) != set(got):
    diff = sorted("/".join(k) for k in set(want) ^ set(got))[:6]
    raise ModelLoadError(f"{step_dir}: params do not match the model config (paths differ: {diff})")
  for k, spec in want.items():
    if tuple(got[k].shape) != tuple(spec.shape):
      raise ModelLoadError(
        f"{step_dir}: param {'/'.join(k)} has shape {tuple(got[k].shape)}, the config implies {spec.shape}"
      )
  tree = unflatten_dict({k: np.asarray(v, want[k].dtype) for k, v in got.items()})
  if not cfg.stacked_params:
    tree = unstack_layers(tree, cfg.num_layers)
  return place_params(tree, cfg, mesh, rules)


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

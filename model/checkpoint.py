"""Save/restore converted params with orbax, restoring straight into the requested sharding."""

from __future__ import annotations

import os
from pathlib import Path

import jax
import orbax.checkpoint as ocp
from flax.traverse_util import flatten_dict, unflatten_dict

from model import sharding as sharding_lib
from model.config import DecoderConfig
from model.errors import ModelLoadError
from model.lm import logical_param_axes, param_shapes, to_layout
from model.param_stream import target_shardings


def save_params(path: str | os.PathLike, params) -> Path:
  path = Path(path).absolute()
  with ocp.StandardCheckpointer() as ckptr:
    ckptr.save(path, params, force=True)
  return path


def restore_training_params(step_dir: str | os.PathLike, cfg: DecoderConfig, mesh=None, rules=None):
  """The params of one step of a training run's CheckpointManager ({params, opt_state, ...}).

  The saved tree's shapes are read from orbax's metadata (no data) and checked against the shapes
  `cfg` implies, in whichever layout training saved (stacked or per layer); then only the params
  are restored (the optimizer state is never read), each array cast to cfg's dtype and read straight
  into its mesh sharding. A layout other than cfg's is converted after, on the devices.
  """
  path = Path(step_dir).absolute() / "default"
  if not path.exists():
    raise ModelLoadError(f"{step_dir} is not a CheckpointManager step (no 'default' item)")
  with ocp.PyTreeCheckpointer() as ckptr:
    saved = ckptr.metadata(path).item_metadata
    if saved is None or "params" not in saved:
      raise ModelLoadError(
        f"{step_dir}: the checkpoint holds no 'params' (saved by experiments.training.train?)"
      )
    inner = saved["params"].get("params", {}) if hasattr(saved["params"], "get") else {}
    block = inner.get("layers", inner.get("layers_0", {}))
    fused = "qkv_proj" in (block.get("attn", {}) if hasattr(block, "get") else {})
    as_saved = cfg.replace(
      scan_layers=True,
      layer_params="stacked" if "layers" in inner else "per_layer",
      fused_projections="fused" if fused else "separate",
    )
    want = flatten_dict(param_shapes(as_saved))
    got = flatten_dict(saved["params"])
    if set(want) != set(got):
      diff = sorted("/".join(k) for k in set(want) ^ set(got))[:6]
      raise ModelLoadError(f"{step_dir}: params do not match the model config (paths differ: {diff})")
    for k, spec in want.items():
      if tuple(got[k].shape) != tuple(spec.shape):
        raise ModelLoadError(
          f"{step_dir}: param {'/'.join(k)} has shape {tuple(got[k].shape)}, the config implies {spec.shape}"
        )
    shardings = target_shardings(as_saved, mesh, rules)
    target = {k: jax.ShapeDtypeStruct(s.shape, s.dtype, sharding=shardings[k]) for k, s in want.items()}
    args = {k: ocp.ArrayRestoreArgs(sharding=shardings[k], dtype=s.dtype) for k, s in want.items()}
    restored = ckptr.restore(
      path,
      args=ocp.args.PyTreeRestore(
        item={"params": unflatten_dict(target)},
        restore_args={"params": unflatten_dict(args)},
        partial_restore=True,
      ),
    )["params"]
  if (as_saved.stacked_params, as_saved.fuse_projections) == (cfg.stacked_params, cfg.fuse_projections):
    return restored
  return jax.device_put(to_layout(restored, cfg), unflatten_dict(target_shardings(cfg, mesh, rules)))


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

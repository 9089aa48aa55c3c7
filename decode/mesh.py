"""Placing the loop's row arrays on a mesh: rows over 'data', vocabulary masks replicated."""
from __future__ import annotations

import jax
import numpy as np
from jax.sharding import NamedSharding, PartitionSpec

from decode.state import LoopInputs


def row_sharding(mesh) -> NamedSharding:
  """[B, ...] arrays split over the 'data' axis (replicated if the mesh has none)."""
  return NamedSharding(mesh, PartitionSpec("data" if "data" in mesh.shape else None))


def place_rows(inp: LoopInputs, data_sharding: NamedSharding) -> LoopInputs:
  B = inp.tokens.shape[0]
  replicated = NamedSharding(data_sharding.mesh, PartitionSpec())

  def put(x):
    x = np.asarray(x)
    return jax.device_put(x, data_sharding if x.ndim and x.shape[0] == B else replicated)

  return jax.tree.map(put, inp)

"""One block param of every layer, as the scanned layer body sees it over per-layer params.

Why not a stacked [L, ...] array sliced at the scan's layer index: XLA:CPU materialises every slice
of an array that feeds a dot (dynamic or static, contiguous or not) as a copy, so a scanned decode
step copied all block weights before reading them again: per token, one extra read and write of the
model (experiments/bench/BENCHMARKS.md, "The per-token weight copy"). Arrays kept one per layer are
read in place by a dot, and a `lax.switch` over the layers whose branch i holds only the dot against
layer i's own array keeps a single layer body in the program: the program grows by one small dot
computation per layer and weight, not by a layer body per layer.
"""

from __future__ import annotations

import flax.struct
import jax
import jax.numpy as jnp


@flax.struct.dataclass
class LayerStack:
  """arrays: layer l's value of one param, per layer; index: [] int32, the layer being run."""

  arrays: tuple[jax.Array, ...]
  index: jax.Array

  @property
  def shape(self) -> tuple[int, ...]:
    return self.arrays[0].shape

  @property
  def dtype(self):
    return self.arrays[0].dtype

  def dot(self, dot, x: jax.Array) -> jax.Array:
    """dot(x, this layer's array), `dot` a product with the weight: each branch reads its own
    layer's array in place."""
    branches = [lambda x, w=w: dot(x, w) for w in self.arrays]
    return jax.lax.switch(self.index, branches, x)

  def value(self) -> jax.Array:
    """This layer's array, for elementwise use (norm scales, biases: small, so a copy is nothing)."""
    return jnp.stack(self.arrays)[self.index]


def layer_stacks(per_layer: list, index: jax.Array):
  """L param trees of the same structure -> one tree whose leaves are LayerStacks at `index`."""
  return jax.tree.map(lambda *arrays: LayerStack(tuple(arrays), index), *per_layer)


def param(module, name: str, init, shape, dtype):
  """module.param(name, ...), or the LayerStack the scanned body over per-layer params passed in its
  place (read as given: flax's shape check would compare its arrays one by one)."""
  if module.has_variable("params", name):
    value = module.get_variable("params", name)
    if isinstance(value, LayerStack):
      return value
  return module.param(name, init, shape, dtype)


def value(x):
  """An array, or a LayerStack's array at its layer."""
  return x.value() if isinstance(x, LayerStack) else x

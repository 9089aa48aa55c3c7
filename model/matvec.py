"""One-row dots spread over the cores: the batch-1 decode step's projections on XLA:CPU.

Why: at batch 1 every projection is a matrix-vector product, and XLA:CPU runs a dot whose output
has one row on a single core (Eigen does not shard such a contraction), so a decode step streamed
its weights at one core's bandwidth. The same product written as a dot batched over `slices`
slices of the weight's major (outermost) dimension is sharded over XLA's intra-op thread pool, one
slice per task. Splitting the major dimension is a bitcast of the weight (nothing is copied); the
partial results are `slices` small vectors, summed when the split dimension is the contracted one
(a kernel [in, out]) and laid side by side when it is the output (an embedding table [V, E] used as
the output layer). experiments/bench/BENCHMARKS.md ("Matvecs on every core") has the measurements.

Only one-row dots are split: with two or more rows XLA:CPU already runs a (multi-threaded) matrix
product, and the split measured slower there. `DecoderConfig.matvec_split` picks `slices`.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp


def _one_row(x: jax.Array) -> bool:
  return math.prod(x.shape[:-1]) == 1


def dot_in_out(x: jax.Array, kernel: jax.Array, slices: int) -> jax.Array:
  """x [..., in] . kernel [in, *out] -> [..., *out] (nn.Dense's contraction).

  One-row x with slices > 1 dividing `in`: a dot batched over `slices` blocks of the input dim,
  each block's partial product summed (a different float32 summation order than one dot: the
  results agree to rounding, not bit for bit).
  """
  n_in = kernel.shape[0]
  if slices <= 1 or not _one_row(x) or n_in % slices:
    return jax.lax.dot_general(x, kernel, (((x.ndim - 1,), (0,)), ((), ())))
  lead = x.shape[:-1]
  xs = x.reshape(slices, 1, n_in // slices)  # [s, 1, in/s]
  ks = kernel.reshape(slices, n_in // slices, -1)  # [s, in/s, out]: a bitcast
  parts = jax.lax.dot_general(xs, ks, (((2,), (1,)), ((0,), (0,))))  # [s, 1, out]
  return jnp.sum(parts, axis=0).reshape(*lead, *kernel.shape[1:])


def dot_out_in(x: jax.Array, table: jax.Array, slices: int) -> jax.Array:
  """x [..., in] . table [out, in]^T -> [..., out] (a tied embedding table as the output layer).

  One-row x with slices > 1 dividing `out`: a dot batched over `slices` blocks of the output dim;
  each output is the same contraction as in one dot.
  """
  n_out = table.shape[0]
  if slices <= 1 or not _one_row(x) or n_out % slices:
    return jax.lax.dot_general(x, table, (((x.ndim - 1,), (1,)), ((), ())))
  lead = x.shape[:-1]
  xs = jnp.broadcast_to(x.reshape(1, 1, -1), (slices, 1, x.shape[-1]))  # [s, 1, in]
  ts = table.reshape(slices, n_out // slices, -1)  # [s, out/s, in]: a bitcast
  parts = jax.lax.dot_general(xs, ts, (((2,), (2,)), ((0,), (0,))))  # [s, 1, out/s]
  return parts.reshape(*lead, n_out)

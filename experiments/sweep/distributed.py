"""Where a sweep runs: optional multi-process start-up, the device mesh, and this process's rows.

Multi-host design: `jax.distributed.initialize` joins the processes; each process then builds
its mesh over its OWN devices ('data' x 'model', teacher tensor-parallel inside a host) and takes
every num_processes-th row of the grid. Processes never wait on each other inside the loop, so a
slow or restarted host does not stall the rest, and resume works per process (each appends to its
own results file). The report merges all files.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
from ml_collections import ConfigDict

from configs.sharding_rules import get_rules
from model.sharding import make_mesh

_INITIALIZED = False


@dataclasses.dataclass
class RunContext:
  mesh: Any
  student_rules: tuple
  teacher_rules: tuple
  process_id: int = 0
  num_processes: int = 1

  @property
  def results_name(self) -> str:
    return "results.jsonl" if self.process_id == 0 else f"results-{self.process_id}.jsonl"

  @property
  def is_reporter(self) -> bool:
    return self.process_id == 0

  def my_rows(self, rows: list) -> list:
    return rows[self.process_id :: self.num_processes]

  def global_batch(self, batch_size: int) -> int:
    """Batch rounded up to a multiple of the data axis; padding rows are inactive and dropped."""
    data = self.mesh.shape.get("data", 1) if self.mesh is not None else 1
    return -(-batch_size // data) * data

  def barrier(self) -> None:
    if self.num_processes > 1:
      from jax.experimental import multihost_utils

      multihost_utils.sync_global_devices("sweep-done")


def _maybe_initialize(dist: ConfigDict | None) -> None:
  global _INITIALIZED
  if _INITIALIZED or dist is None or not dist.get("enabled", False):
    return
  kw = {}
  if dist.get("coordinator_address"):
    kw = dict(
      coordinator_address=dist.coordinator_address,
      num_processes=dist.num_processes,
      process_id=dist.process_id,
    )
  if dist.get("cpu_collectives"):
    jax.config.update("jax_cpu_collectives_implementation", dist.cpu_collectives)
  jax.distributed.initialize(**kw)  # no args: auto-detected on TPU pods / SLURM
  _INITIALIZED = True


def setup(cfg: ConfigDict) -> RunContext:
  _maybe_initialize(cfg.get("distributed"))
  mesh_cfg = cfg.get("mesh", ConfigDict({"data": -1, "model": 1}))
  mesh = make_mesh(
    {"data": mesh_cfg.get("data", -1), "model": mesh_cfg.get("model", 1)}, devices=jax.local_devices()
  )
  return RunContext(
    mesh=mesh,
    student_rules=get_rules(cfg.get("student_rules", "replicated")),
    teacher_rules=get_rules(cfg.get("teacher_rules", "tensor_parallel")),
    process_id=jax.process_index(),
    num_processes=jax.process_count(),
  )

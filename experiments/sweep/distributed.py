"""Where a sweep runs: optional multi-process start-up, the device mesh, and this process's rows.

Multi-host design: `jax.distributed.initialize` joins the processes. With `mesh.scope = "host"`
(the default) each process then builds its mesh over its OWN devices ('data' x 'model', teacher
tensor-parallel inside a host) and takes every num_processes-th row of the grid. Processes never
wait on each other inside the loop, so a slow or restarted host does not stall the rest, and resume
works per process (each appends to its own results file). The report merges all files.

With `mesh.scope = "global"` there is one mesh over every process's devices (jax.devices()), so the
`model` axis may span hosts: a teacher too large for one host is split over several (SPMD, as
maxtext runs). Every process then runs every loop call with the same inputs (rows are global arrays;
each process feeds the shards on its devices), holds every row's result, and writes the rows it owns
(`owns`: a hash of the row id, so each row is written exactly once, by one process, whatever the
batches), each to its own results file as before. Every process reads every results file in full at
the start, so all plan the same calls; resume and the manifest work as with host meshes. A process
that dies leaves the others in a collective: JAX's coordination service ends them (its heartbeat
timeout), with its own fatal line.

Settings that cannot work are errors before anything starts (`check_settings`), and joining is
bounded: jax's `initialization_timeout` (config `distributed.initialization_timeout`, seconds). A
coordinator that is not reachable in that time is a clear error: jax itself aborts the process (a
fatal log line, no Python exception) when its client cannot connect, so a process other than 0 first
waits for the coordinator's port to accept connections, and process 0 first checks that the port
is free (jax crashes when it cannot bind it).
"""

from __future__ import annotations

import dataclasses
import errno
import socket
import time
import zlib
from typing import Any

import jax

from configs.sharding_rules import get_rules
from experiments.sweep.config import DistributedConfig, SweepConfig, defaults
from model.errors import UserError
from model.sharding import make_mesh

_INITIALIZED = False
SCOPES = ("host", "global")


class DistributedConfigError(UserError):
  """Multi-process settings that cannot work as given, or a coordinator that cannot be reached."""


@dataclasses.dataclass
class RunContext:
  mesh: Any
  student_rules: tuple
  teacher_rules: tuple
  process_id: int = 0
  num_processes: int = 1
  global_mesh: bool = False  # mesh.scope == "global": the mesh spans every process's devices

  @property
  def results_name(self) -> str:
    return "results.jsonl" if self.process_id == 0 else f"results-{self.process_id}.jsonl"

  @property
  def is_reporter(self) -> bool:
    return self.process_id == 0

  def my_rows(self, rows: list) -> list:
    """The rows this process decodes: its share on a host mesh, all of them on a global mesh."""
    return rows if self.global_mesh else rows[self.process_id :: self.num_processes]

  @property
  def owns(self):
    """On a global mesh, which decoded rows this process writes (None: all it decodes)."""
    if not self.global_mesh or self.num_processes == 1:
      return None
    n, me = self.num_processes, self.process_id
    return lambda row_id: zlib.crc32(row_id.encode()) % n == me

  def global_batch(self, batch_size: int) -> int:
    """Batch rounded up to a multiple of the data axis; padding rows are inactive and dropped."""
    data = self.mesh.shape.get("data", 1) if self.mesh is not None else 1  # jax's axis name -> size dict
    return -(-batch_size // data) * data

  def barrier(self) -> None:
    if self.num_processes > 1:
      from jax.experimental import multihost_utils

      multihost_utils.sync_global_devices("sweep-done")


def _split_address(address: str) -> tuple[str, int]:
  host, sep, port = address.rpartition(":")
  if not (sep and host and port.isdigit() and 0 < int(port) < 65536):
    raise DistributedConfigError(
      f"distributed.coordinator_address={address!r} is not HOST:PORT (e.g. 10.0.0.1:1234)"
    )
  return host.strip("[]"), int(port)


def check_settings(dist: DistributedConfig) -> None:
  """Refuses multi-process settings that cannot work, before anything starts or is written."""
  n, pid, address = dist.num_processes, dist.process_id, dist.coordinator_address
  explicit = [  # the process settings not left at base_config()'s defaults
    f"{key}={getattr(dist, key)!r}"
    for key in ("num_processes", "process_id", "coordinator_address")
    if getattr(dist, key) != getattr(defaults().distributed, key)
  ]
  if not dist.enabled:
    if explicit:
      raise DistributedConfigError(
        f"distributed.{', '.join(explicit)} given but distributed.enabled is False: pass "
        "--config.distributed.enabled=True for a multi-process sweep, or drop them for one process"
      )
    return
  if dist.initialization_timeout <= 0:
    raise DistributedConfigError("distributed.initialization_timeout must be a positive number of seconds")
  if not address:
    if explicit:
      raise DistributedConfigError(
        f"distributed.{', '.join(explicit)} needs distributed.coordinator_address=HOST:PORT; leave them at "
        "their defaults for auto-detection (TPU pods, SLURM)"
      )
    return
  _split_address(address)
  if n < 1:
    raise DistributedConfigError(f"distributed.num_processes must be >= 1, got {n}")
  if not 0 <= pid < n:
    raise DistributedConfigError(
      f"distributed.process_id={pid} is out of range for num_processes={n}: use 0..{n - 1}, one per process"
    )


def _port_is_free(port: int) -> bool:
  """Whether the coordinator (process 0) can bind PORT on all addresses, as jax's service will."""
  for family, any_address in ((socket.AF_INET6, "::"), (socket.AF_INET, "")):
    try:
      with socket.socket(family, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind((any_address, port))
      return True
    except OSError as e:
      if family == socket.AF_INET6 and e.errno in (errno.EAFNOSUPPORT, errno.EADDRNOTAVAIL):  # no IPv6 here
        continue
      return False
  return False


def _wait_reachable(host: str, port: int, timeout: float) -> bool:
  """Whether HOST:PORT accepts a TCP connection within `timeout` seconds (retrying, as jax does)."""
  deadline = time.monotonic() + timeout
  while True:
    try:
      with socket.create_connection((host, port), timeout=max(0.1, min(2.0, deadline - time.monotonic()))):
        return True
    except OSError:
      if time.monotonic() >= deadline:
        return False
      time.sleep(0.25)


def _preflight(address: str, pid: int, n: int, timeout: float) -> float:
  """Clear errors for the coordinator failures that jax turns into a crash; returns the time left."""
  host, port = _split_address(address)
  start = time.monotonic()
  if pid == 0:
    if not _port_is_free(port):
      raise DistributedConfigError(
        f"process 0 runs the coordinator but port {port} of distributed.coordinator_address={address!r} is "
        "already in use on this host (an earlier sweep still running?): pick another port"
      )
  elif not _wait_reachable(host, port, timeout):
    raise DistributedConfigError(
      f"process {pid} of {n} could not reach the coordinator at {address} within {timeout:g} s "
      "(distributed.initialization_timeout): start process 0 with the same coordinator_address, and check "
      "that HOST:PORT is process 0's host and reachable from here"
    )
  return max(1.0, timeout - (time.monotonic() - start))


def _maybe_initialize(dist: DistributedConfig) -> None:
  global _INITIALIZED
  if _INITIALIZED or not dist.enabled:
    return
  check_settings(dist)
  timeout = dist.initialization_timeout
  kw = {}
  address = dist.coordinator_address
  if address:
    timeout = _preflight(address, dist.process_id, dist.num_processes, timeout)
    kw = dict(coordinator_address=address, num_processes=dist.num_processes, process_id=dist.process_id)
  if dist.cpu_collectives:
    jax.config.update("jax_cpu_collectives_implementation", dist.cpu_collectives)
  try:  # no coordinator: auto-detected on TPU pods / SLURM
    jax.distributed.initialize(**kw, initialization_timeout=int(round(timeout)))
  except (ValueError, RuntimeError) as e:  # auto-detection found no cluster, or jax refused the settings
    where = f"the coordinator at {address}" if address else "an auto-detected cluster (TPU pod, SLURM)"
    first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
    raise DistributedConfigError(f"could not join {where}: {first}") from e
  _INITIALIZED = True


def setup(cfg: SweepConfig) -> RunContext:
  _maybe_initialize(cfg.distributed)
  if cfg.mesh.scope not in SCOPES:
    raise DistributedConfigError(f"mesh.scope={cfg.mesh.scope!r}: choose one of {', '.join(SCOPES)}")
  devices = jax.devices() if cfg.mesh.scope == "global" else jax.local_devices()
  mesh = make_mesh({"data": cfg.mesh.data, "model": cfg.mesh.model}, devices=devices)
  return RunContext(
    global_mesh=cfg.mesh.scope == "global",
    mesh=mesh,
    student_rules=get_rules(cfg.student_rules),
    teacher_rules=get_rules(cfg.teacher_rules),
    process_id=jax.process_index(),
    num_processes=jax.process_count(),
  )

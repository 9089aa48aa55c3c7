"""README's pod runbook table: every paper pairing planned for every pod, from the public configs.

  python -m experiments.plan.runbook [--no-compile] [--batch-size 32] [--max-len 1024] [--out FILE.md]

Each plan is `python -m experiments.plan` in a fresh process (its fake device count is fixed before
jax starts), both models tensor-parallel over every device of the mesh (data=1). A pod of several
hosts is planned twice: one mesh over all its chips (mesh.scope="global") and one host's chips
(mesh.scope="host", each host a replica). Prints a markdown table; progress on stderr.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from experiments.plan.pairings import PAIRINGS, PODS, Pod, write_config_dir


def plan_json(
  student: Path,
  teacher: Path,
  devices: int,
  hbm_gib: float,
  batch: int,
  max_len: int,
  student_rules: str = "tensor_parallel",
  hbm_gbps: float | None = None,
  compile: bool = True,
) -> dict:
  """One plan's JSON object (its last stdout line), mesh data=1 x model=devices, bfloat16."""
  flags = [
    *("--student", str(student), "--teacher", str(teacher), "--devices", str(devices)),
    *("--mesh-data", "1", "--mesh-model", str(devices), "--student-rules", student_rules),
    *("--teacher-rules", "tensor_parallel", "--batch-size", str(batch), "--max-len", str(max_len)),
    *("--dtype", "bfloat16", "--hbm-gib", str(hbm_gib)),
  ]
  if hbm_gbps is not None:
    flags += ["--hbm-gbps", str(hbm_gbps)]
  if not compile:
    flags.append("--no-compile")
  env = dict(os.environ)
  env.pop("XLA_FLAGS", None)  # the plan sets its own device count
  r = subprocess.run(
    [sys.executable, "-m", "experiments.plan", *flags], capture_output=True, text=True, env=env
  )
  if r.returncode:
    raise RuntimeError(f"python -m experiments.plan {' '.join(flags)} failed:\n{r.stderr[-3000:]}")
  return json.loads(r.stdout.strip().splitlines()[-1])


def meshes(pod: Pod) -> list[tuple[str, int]]:
  """(scope, devices in one mesh) to plan for a pod."""
  if pod.devices == pod.devices_per_host:
    return [("host", pod.devices)]
  return [("global", pod.devices), ("host", pod.devices_per_host)]


HEADER = (
  "| pod | scope | student + teacher | mesh (data x model) | weights | student cache | teacher cache "
  "| temporaries | per device | HBM | fits | decode step (roofline) |"
)


def row(pod: Pod, scope: str, devices: int, pairing: tuple[str, str], p: dict) -> str:
  temps = "-" if p["temporaries_gib"] is None else f"{p['temporaries_gib'] + (p['loop_state_gib'] or 0):.2f}"
  return (
    f"| {pod.name} | {scope} | {pairing[0]} + {pairing[1]} | 1 x {devices} | {p['weights_gib']:.2f} "
    f"| {p['student_cache_gib']:.2f} | {p['teacher_cache_gib']:.2f} | {temps} | {p['per_device_gib']:.2f} "
    f"| {p['hbm_gib']:g} | {'yes' if p['fits'] else 'no'} | {p['teacher_step_ms']:.1f} ms |"
  )


def table(batch: int, max_len: int, compile: bool) -> str:
  lines = [HEADER, "|" + "---|" * (HEADER.count("|") - 1)]
  with tempfile.TemporaryDirectory(prefix="runbook_") as root:
    dirs = {name: write_config_dir(root, name) for pair in PAIRINGS for name in pair}
    for pod in PODS:
      for scope, devices in meshes(pod):
        for pairing in PAIRINGS:
          print(f"planning {pairing} on {pod.name} ({scope}, {devices} devices)", file=sys.stderr, flush=True)
          p = plan_json(
            dirs[pairing[0]],
            dirs[pairing[1]],
            devices,
            pod.hbm_gib,
            batch,
            max_len,
            hbm_gbps=pod.hbm_gbps,
            compile=compile,
          )
          lines.append(row(pod, scope, devices, pairing, p))
  return "\n".join(lines)


def main(argv=None) -> None:
  ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  ap.add_argument("--batch-size", type=int, default=32)
  ap.add_argument("--max-len", type=int, default=1024)
  ap.add_argument("--no-compile", dest="compile", action="store_false", help="arithmetic only")
  ap.add_argument("--out", type=Path, default=None, help="also write the table to this file")
  args = ap.parse_args(argv)
  text = table(args.batch_size, args.max_len, args.compile)
  if args.out:
    args.out.write_text(text + "\n")
  print(text)


if __name__ == "__main__":
  main()

"""Meshes on 8 fake CPU devices, and a sweep split over two local processes (jax.distributed + gloo).

Determinism: the same config and seeds give the same rows, every field, whether the sweep runs on
one device, on 8 fake devices (rows over 'data', the teacher tensor-parallel over 'model'), or split
over two processes; each run is its own process, so this is also run-after-run reproducibility.

The processes share the run's persistent compilation cache (tests/conftest.py): a process whose
programs an earlier one compiled (the two-process sweeps after the single-process one) loads them
instead of compiling again. Each run still traces and lowers its own program; the cache hands back
the executable of the same program, so every comparison below is between runs of the same program.
"""

import json
import os
import socket
import subprocess
import sys
import textwrap
import zlib
from pathlib import Path

import numpy as np
import pytest
from sweep_configs import write_config_file

MESH_SCRIPT = textwrap.dedent("""
    import dataclasses, os, sys, json
    os.environ["XLA_FLAGS"] = "--xla_force_host_platform_device_count=8"
    import jax
    from configs.sharding_rules import REPLICATED, TENSOR_PARALLEL
    from decode.api import DecodeRequest, Sampling
    from decode.host.guided import GuidedDecoder
    from model.hf_import import load_model
    from model.sharding import make_mesh, MeshError
    d = sys.argv[1]
    prompts = ["what is 3+4?", "ab", "hello there. x", "qq", "z", "1+1=", "abc abc", "e"]
    policies = ["never", "always", "step:1", "step:2", "step:2,n=2", "hint:1,m=2", "entropy:2.0", "random:0.5"]
    def run(mesh):
      kw = {} if mesh is None else dict(mesh=mesh, student_rules=REPLICATED, teacher_rules=TENSOR_PARALLEL)
      # decode steps read the cache in blocks of 16 positions (model.decoder.attend_blocks) on every mesh
      blocked = lambda lm: dataclasses.replace(lm, cfg=lm.cfg.replace(decode_block=16))
      s = blocked(load_model(d + "/s", mesh=mesh, rules=REPLICATED))
      t = blocked(load_model(d + "/t", mesh=mesh, rules=TENSOR_PARALLEL))
      g = GuidedDecoder(s, t, step_delimiter="e", **kw)
      ids = g.encode(prompts)
      res = g.generate(DecodeRequest(ids, policies, 16, sampling=Sampling(seed=list(range(8)),
                       temperature=[0.0, 0.0, 0.0, 1.0, 0.0, 0.7, 0.0, 1.0])))
      # fork mode's path: prefill prompt + the student's first tokens, then continue from the caches
      base = g.generate(DecodeRequest(ids, "never", 16, max_len=64))
      pre = [r.token_ids[:3] for r in base]
      caches = g.prefill(ids, pre, max_len=64, batch_size=8)
      rows = [5, 0, 3]
      forked = g.generate(DecodeRequest([ids[i] for i in rows], "step:2", 16, max_len=64, batch_size=8,
                          prefixes=[pre[i] for i in rows], caches=caches.rows(rows, 8)))
      # a few-shot style shared prefix, prefilled once at batch 1 (replicated over 'data'), tiled to rows
      few = g.encode(["q: 1+2=? a: 3. q: 2+2=? a: 4.\\n" + p for p in prompts])
      shared = g.shared_prefix(few, max_len=64)
      assert shared is not None
      kw2 = dict(max_new_tokens=16, max_len=64, sampling=Sampling(seed=list(range(8)), temperature=[0.0, 1.0] * 4))
      with_prefix = g.generate(DecodeRequest(few, policies, shared_prefix=shared, **kw2))
      without = g.generate(DecodeRequest(few, policies, **kw2))
      assert [(r.token_ids, r.authors) for r in with_prefix] == [(r.token_ids, r.authors) for r in without]
      return [(r.token_ids, r.authors) for r in res + forked + with_prefix]
    ref = run(None)
    meshes = [({"data": 8, "model": 1}, None), ({"data": 4, "model": 2}, None), ({"data": 2, "model": 4}, None),
              ({"data": 1, "model": 2}, jax.devices()[:2])]  # the last: teacher sub-batches on
    for shape, devices in meshes:
      mesh = make_mesh(shape, devices=devices)
      assert run(mesh) == ref, shape
      print("MESH_OK", shape)
    try:
      make_mesh({"data": 3, "model": 2})
    except MeshError as e:
      print("MESH_ERROR", e)
""")


def test_meshes_give_single_device_tokens(pair_dir):
  env = dict(os.environ, JAX_PLATFORMS="cpu")
  r = subprocess.run(
    [sys.executable, "-c", MESH_SCRIPT, str(pair_dir)], capture_output=True, text=True, env=env
  )
  assert r.returncode == 0, r.stderr[-3000:]
  assert r.stdout.count("MESH_OK") == 4
  assert "needs 6 devices but 8 are available" in r.stdout


def _free_port() -> int:
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


def _config(pair_dir, tmp_path: Path) -> Path:
  f = tmp_path / "cfg.py"
  write_config_file(
    f,
    pair_dir,
    ("never", "step:1", "step:2", "entropy:2.0"),
    num_problems=5,
    batch_size=3,
    max_new_tokens=12,
    lines=("c.temperature = 0.8", "c.top_p = 0.95"),  # sampled: row keys must not depend on placement
  )
  return f


def _rows(out: Path) -> dict:
  rows = {}
  for f in sorted(out.glob("results*.jsonl")):
    for line in f.read_text().splitlines():
      r = json.loads(line)
      assert r["row_id"] not in rows
      rows[r["row_id"]] = r
  return rows


# Floats the student computes (its step-start entropy / max prob / margin) come from reductions
# whose order follows the device layout: equal to ~1e-6, not bit for bit. Everything else is exact.
FLOAT_FIELDS = ("step_uncertainty",)


def _assert_same_rows(a: dict, b: dict) -> None:
  assert a.keys() == b.keys()
  for rid in a:
    ra, rb = dict(a[rid]), dict(b[rid])
    for field in FLOAT_FIELDS:
      np.testing.assert_allclose(np.asarray(ra.pop(field, [])), np.asarray(rb.pop(field, [])), atol=1e-4)
    assert ra == rb, rid  # every other field of every row


def _sweep(cfg: Path, out: Path, *flags: str, devices: int = 1) -> None:
  env = dict(os.environ, JAX_PLATFORMS="cpu", XLA_FLAGS=f"--xla_force_host_platform_device_count={devices}")
  r = subprocess.run(
    [sys.executable, "-m", "experiments.sweep", f"--config={cfg}", f"--config.output_dir={out}", *flags],
    capture_output=True,
    text=True,
    env=env,
  )
  assert r.returncode == 0, r.stderr[-2000:]


def test_same_rows_on_one_device_eight_devices_two_processes_and_a_global_mesh(pair_dir, tmp_path):
  cfg = _config(pair_dir, tmp_path)
  single = tmp_path / "single"
  _sweep(cfg, single)
  eight = tmp_path / "eight"  # rows over data=4, the teacher tensor-parallel over model=2
  _sweep(cfg, eight, "--config.mesh.data=4", "--config.mesh.model=2", devices=8)
  _assert_same_rows(_rows(eight), _rows(single))
  multi = tmp_path / "multi"
  _two_processes(cfg, multi)
  assert (multi / "results.jsonl").exists() and (multi / "results-1.jsonl").exists()
  a, b = _rows(single), _rows(multi)
  assert len(a) == 5 * 4
  _assert_same_rows(a, b)
  # process 0 wrote the manifest, process 1 checked it: the same sweep as the single-process run
  m0, m1 = [json.loads((d / "manifest.json").read_text()) for d in (single, multi)]
  assert (m0["content"], m0["extent"]) == (m1["content"], m1["extent"])
  import pandas as pd

  summary = pd.read_csv(multi / "summary.csv")
  assert set(summary["n"]) == {5}  # the report merged both processes' files: all 5 problems per policy
  # mesh.scope=global: one data=1 x model=8 mesh over both processes' 4 devices (both models' weights
  # and caches split across the processes), every process running every call: the same rows, each
  # written exactly once, by the process its id hashes to.
  spmd = tmp_path / "global"
  flags = ("--config.mesh.scope=global", "--config.mesh.data=1", "--config.mesh.model=8")
  _two_processes(cfg, spmd, *flags, "--config.student_rules=tensor_parallel", devices=4)
  _assert_same_rows(_rows(spmd), a)  # _rows also refuses a row written twice
  for pid, name in enumerate(("results.jsonl", "results-1.jsonl")):
    ids = [json.loads(line)["row_id"] for line in (spmd / name).read_text().splitlines()]
    assert ids and all(zlib.crc32(i.encode()) % 2 == pid for i in ids)


def _two_processes(cfg: Path, out: Path, *flags: str, devices: int = 1) -> None:
  port = _free_port()
  env = dict(os.environ, JAX_PLATFORMS="cpu", XLA_FLAGS=f"--xla_force_host_platform_device_count={devices}")
  procs = [
    subprocess.Popen(
      [
        sys.executable,
        "-m",
        "experiments.sweep",
        f"--config={cfg}",
        f"--config.output_dir={out}",
        "--config.distributed.enabled=True",
        f"--config.distributed.coordinator_address=127.0.0.1:{port}",
        "--config.distributed.num_processes=2",
        f"--config.distributed.process_id={i}",
        "--config.distributed.cpu_collectives=gloo",
        *flags,
      ],
      stdout=subprocess.PIPE,
      stderr=subprocess.PIPE,
      text=True,
      env=env,
    )
    for i in range(2)
  ]
  outs = [p.communicate(timeout=300) for p in procs]
  for p, (_, err) in zip(procs, outs):
    assert p.returncode == 0, err[-3000:]


def _book(out: Path) -> dict:
  """thresholds.json's entries without their timestamps."""
  entries = json.loads((out / "thresholds.json").read_text())["triggers"]
  return {k: {f: v for f, v in e.items() if f != "updated"} for k, e in entries.items()}


def test_two_processes_calibrate_once_on_every_process_rows(pair_dir, tmp_path):
  """A q= trigger and its matched control over two processes: process 0 sets the threshold from both
  processes' never rows and the rate from both processes' trigger rows; the thresholds file and every
  row equal a single process's. Each process calibrating on its own share gives other thresholds."""
  from experiments.sweep.calibration import threshold_for_rate

  trigger = "entropy:q=0.3"
  cfg = tmp_path / "cfg.py"
  write_config_file(
    cfg,
    pair_dir,
    ("never", "step:1", trigger),
    num_problems=6,
    batch_size=3,
    max_new_tokens=20,  # several steps a row
    lines=("c.matched_random = True",),
  )
  single, multi = tmp_path / "single", tmp_path / "multi"
  _sweep(cfg, single)
  _two_processes(cfg, multi)
  a, b = _rows(single), _rows(multi)
  assert len(a) == 6 * 4  # never, step:1, the trigger and its control on each problem
  for rows in (a, b):  # one threshold and one control spec in the whole sweep
    assert len({r["threshold"] for r in rows.values() if r["policy"] == trigger}) == 1
    assert len({r["policy"] for r in rows.values() if r.get("matched_to")}) == 1
  threshold = [r["threshold"] for r in a.values() if r["policy"] == trigger][0]
  for rows in (a, b):
    for r in rows.values():
      if r["policy"] == trigger:  # read off the student's floats: equal to ~1e-6 (FLOAT_FIELDS)
        assert r.pop("threshold") == pytest.approx(threshold, abs=1e-4)
  _assert_same_rows(a, b)
  book_a, book_b = _book(single), _book(multi)
  (key,) = book_a
  assert book_a[key].pop("threshold") == pytest.approx(book_b[key].pop("threshold"), abs=1e-4)
  assert (
    book_a == book_b
    and book_b[key]["threshold_from"]["rows"] == 6
    and book_b[key]["matched_rate_from"]["rows"] == 6
  )
  assert sorted(p.name for p in multi.glob("thresholds*.json")) == ["thresholds.json"]
  # What each process would have set from its own share: not both the sweep's threshold.
  shares = []
  for f in ("results.jsonl", "results-1.jsonl"):
    share = [json.loads(x) for x in (multi / f).read_text().splitlines()]
    shares.append(
      threshold_for_rate(
        True, 0.3, [m[0] for r in share if r["policy"] == "never" for m in r["step_uncertainty"]]
      )
    )
  assert any(t != pytest.approx(threshold, abs=1e-4) for t in shares)

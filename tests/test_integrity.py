"""Sweep integrity: one sweep per output dir (manifest.json), one writer per results file (a lock),
clear errors for settings and files that cannot work (distributed settings, config flags, corrupt
results lines). README.md "Failure behaviour" names these tests."""

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from ml_collections import ConfigDict
from sweep_configs import rows_of, sweep_argv, tiny_sweep_config, write_config_file

from experiments.sweep import identity, manifest
from experiments.sweep.content import CONTENT_KEYS
from experiments.sweep.distributed import DistributedConfigError
from experiments.sweep.lock import ResultsLockedError, WriterLock
from experiments.sweep.run import run_sweep
from experiments.sweep.store import CorruptResultsError, ResultsStore

POLICIES = ("never", "step:1", "step:2")


def sweep_config(pair_dir, out, **overrides) -> ConfigDict:
  kw = dict(num_problems=2, batch_size=2, max_new_tokens=10)
  kw.update(overrides)
  return tiny_sweep_config(pair_dir, out, kw.pop("policies", POLICIES), **kw)


def snapshot(d: Path) -> dict:
  """Every file's bytes and mtime: what 'nothing was written' compares."""
  return {p.name: (p.read_bytes(), p.stat().st_mtime_ns) for p in sorted(d.iterdir())}


def cli(pair_dir, out, *flags, config_lines=(), num_problems=2, policies=POLICIES):
  """The sweep CLI on a small config file written next to `out`."""
  cfg_file = out.parent / f"cfg_{out.name}.py"
  write_config_file(
    cfg_file,
    pair_dir,
    policies,
    num_problems=num_problems,
    batch_size=2,
    max_new_tokens=10,
    lines=config_lines,
  )
  return sweep_argv(cfg_file, out, *flags)


def one_clear_line(r: subprocess.CompletedProcess, message: str) -> None:
  """The CLI contract: exit 2, `error: ...` naming the problem, no traceback."""
  err = r.stderr.strip().splitlines()
  assert r.returncode == 2, r.stderr[-3000:]
  assert err and err[-1].startswith("error: ") and message in err[-1], r.stderr[-3000:]
  assert "Traceback" not in r.stderr, r.stderr[-3000:]


# --------------------------------------------------------------------------- manifest


def test_manifest_is_written_before_the_first_row(pair_dir, tmp_path, monkeypatch):
  out = tmp_path / "out"
  seen = []
  append = ResultsStore.append

  def checked_append(self, rows):
    seen.append((out / manifest.MANIFEST).exists())
    return append(self, rows)

  monkeypatch.setattr(ResultsStore, "append", checked_append)
  run_sweep(sweep_config(pair_dir, out), progress=False)
  assert seen and all(seen)
  m = json.loads((out / manifest.MANIFEST).read_text())
  assert m["format"] == 2 and tuple(m["content"]) == CONTENT_KEYS and m["content"]["temperature"] == 0.0
  assert m["extent"]["policies"] == ["never", "step:1", "step:2"] and m["extent"]["problems"] == 2
  assert m["extent"]["students"] == [{"name": "s", "checkpoint": None}] and m["report_rows"] == "extent"
  assert set(m["students"]["s"]) >= {"config.json", "model.safetensors", "tokenizer.json"}
  assert m["code"]["package"] == "first-step-guidance" and "git_commit" in m["code"]
  (run,) = m["runs"]
  assert run["code"] == m["code"] and run["decoded"] == 6 and run["kept"] == 0 and "finished" in run
  assert m["paths"]["teacher"] == str(pair_dir / "t")


def test_changed_settings_are_refused_before_anything_is_written(pair_dir, tmp_path):
  out = tmp_path / "out"
  run_sweep(sweep_config(pair_dir, out), progress=False)
  before = snapshot(out)
  changed = sweep_config(pair_dir, out, temperature=1.0, max_new_tokens=12, policies=("never", "step:1"))
  with pytest.raises(manifest.ManifestError) as e:
    run_sweep(changed, progress=False)
  msg = str(e.value)
  for part in ("temperature: 0.0 -> 1.0", "max_new_tokens: 10 -> 12", "--config.output_dir"):
    assert part in msg, msg
  assert "top_p" not in msg and "policies:" not in msg  # only the content keys that differ
  assert snapshot(out) == before  # nothing written: no row, no manifest, not even the lock file


def test_changed_model_files_are_refused_but_a_copy_is_the_same_model(pair_dir, tmp_path):
  out = tmp_path / "out"
  run_sweep(sweep_config(pair_dir, out), progress=False)
  copy = tmp_path / "s_copy"
  shutil.copytree(pair_dir / "s", copy)  # new path, new mtimes, same files: the same rows
  moved = sweep_config(pair_dir, out)
  moved.students[0].path = str(copy)
  assert run_sweep(moved, progress=False)["loop_calls"] == 0
  weights = copy / "model.safetensors"
  data = bytearray(weights.read_bytes())
  data[-1] ^= 0xFF  # as if retrained: same names and sizes, other weights
  weights.write_bytes(bytes(data))
  with pytest.raises(manifest.ManifestError, match=r'students\.s\["model\.safetensors"\]: "sha256 '):
    run_sweep(moved, progress=False)


def test_settings_that_do_not_define_rows_may_change(pair_dir, tmp_path):
  out = tmp_path / "out"
  run_sweep(sweep_config(pair_dir, out), progress=False)
  rows = rows_of(out)
  other = dict(batch_size=3, fork=False, shared_prefix=False, teacher_sub_batches=0, teacher_chunk=2)
  assert run_sweep(sweep_config(pair_dir, out, **other), progress=False)["loop_calls"] == 0
  assert rows_of(out) == rows


def test_results_without_a_manifest_are_adopted_with_a_warning(pair_dir, tmp_path, capsys):
  out = tmp_path / "out"
  run_sweep(sweep_config(pair_dir, out), progress=False)
  (out / manifest.MANIFEST).unlink()  # a dir written before sweeps recorded manifests
  capsys.readouterr()
  run_sweep(sweep_config(pair_dir, out), progress=False)
  assert "has results but no manifest.json" in capsys.readouterr().err
  assert (out / manifest.MANIFEST).exists()


def fake_manifest(temperature: float = 0.0, code: dict | None = None) -> dict:
  """A minimal manifest as manifest.build makes one (what ensure and check read)."""
  extent = {"problems": 1, "students": [], "policies": ["never"], "seeds": [0], "matched_random": False}
  return {
    "format": manifest.FORMAT,
    "created": "2024-01-01T00:00:00+00:00",
    "content": {"temperature": temperature},
    "students": {},
    "extent": {**extent, "problem_ids": ["p/0"]},
    "held": extent,
    "runs": [{"started": "2024-01-01T00:00:00+00:00", "extent": extent, "code": code or {}}],
    "code": code or {},
  }


def format_1(m: dict, num_problems: int, limit: int | None) -> dict:
  """The manifest the code before issue 22 wrote for the same synthetic-task sweep: every row-defining
  setting in one `rows` section (keys in its ROW_KEYS order)."""
  c, e = m["content"], m["extent"]
  rows = {
    "task": {"name": c["task"]["name"], "num_problems": num_problems, "synthetic": c["task"]["synthetic"]},
    "limit": limit,
    "prompt_style": c["prompt_style"],
    "exemplars": {k: v for k, v in c["exemplars"].items() if k != "chosen"},
    "students": [{**s, "model": m["students"][s["name"]]} for s in e["students"]],
    "teacher": c["teacher"],
    "policies": e["policies"],
    "matched_random": e["matched_random"],
    "seeds": e["seeds"],
  }
  rows.update({k: c[k] for k in ("max_new_tokens", "max_steps", "temperature", "top_k", "top_p")})
  rows.update(step_delimiter=c["step_delimiter"], dtype=c["dtype"])
  return {"format": 1, "created": m["created"], "rows": rows, "code": m["code"], "paths": m["paths"]}


def test_a_manifest_from_before_extents_is_migrated_and_grows(pair_dir, tmp_path):
  out = tmp_path / "out"
  # The code before issue 22 also ran rows on past their answer: stop_at_answer=False is that sweep.
  run_sweep(sweep_config(pair_dir, out, num_problems=4, limit=2, stop_at_answer=False), progress=False)
  old = format_1(json.loads((out / manifest.MANIFEST).read_text()), num_problems=4, limit=2)
  (out / manifest.MANIFEST).write_text(json.dumps(old, indent=2))
  before = (out / "results.jsonl").read_bytes()
  with pytest.raises(manifest.ManifestError, match="temperature: 0.0 -> 1.0"):
    run_sweep(
      sweep_config(pair_dir, out, num_problems=4, limit=2, temperature=1.0, stop_at_answer=False),
      progress=False,
    )
  # Its rows ran to EOS or a limit: resuming with the default (stop at the answer) would mix the two.
  with pytest.raises(manifest.ManifestError, match="stop_at_answer: false -> true"):
    run_sweep(sweep_config(pair_dir, out, num_problems=4, limit=2), progress=False)
  stats = run_sweep(
    sweep_config(pair_dir, out, num_problems=4, limit=2, stop_at_answer=False), progress=False
  )
  assert (stats["decoded"], stats["kept"], stats["loop_calls"]) == (0, 6, 0)
  m = json.loads((out / manifest.MANIFEST).read_text())
  assert m["format"] == 2 and m["code"] == old["code"] and m["created"] == old["created"]
  assert [r.get("format") for r in m["runs"]] == [1, None] and m["runs"][0]["extent"]["problems"] == 2
  stats = run_sweep(
    sweep_config(pair_dir, out, num_problems=4, stop_at_answer=False), progress=False
  )  # grows
  assert (stats["decoded"], stats["kept"]) == (6, 6)
  assert (out / "results.jsonl").read_bytes().startswith(before) and len(rows_of(out)) == 12


def test_other_processes_wait_for_process_0s_manifest(tmp_path):
  m = fake_manifest()
  with pytest.raises(manifest.ManifestError, match="process 0 has not written"):
    manifest.ensure(tmp_path, m, writer=False, wait_s=0.3, poll_s=0.05)
  writer = threading.Timer(0.2, lambda: manifest.ensure(tmp_path, m, writer=True))
  writer.start()
  manifest.ensure(tmp_path, m, writer=False, wait_s=30, poll_s=0.05)  # returns once it appears and matches
  writer.join()
  with pytest.raises(manifest.ManifestError, match=r"temperature: 0.0 -> 1.0"):
    manifest.ensure(tmp_path, fake_manifest(temperature=1.0), writer=False, wait_s=1)
  (tmp_path / manifest.MANIFEST).write_text("{not json")
  with pytest.raises(manifest.ManifestError, match="not valid JSON"):
    manifest.check(tmp_path, m)


def test_other_code_only_warns(tmp_path, capsys):
  old = fake_manifest(code={"version": "0.1.0", "git_commit": "a" * 40, "git_dirty": False})
  manifest.ensure(tmp_path, old, writer=True)
  new = fake_manifest(code={"version": "0.2.0", "git_commit": "b" * 40, "git_dirty": True})
  manifest.ensure(tmp_path, new, writer=True)
  err = capsys.readouterr().err
  assert "last written by code 0.1.0 at aaaaaaaaaaaa; resuming with 0.2.0 at bbbbbbbbbbbb+changes" in err
  m = json.loads((tmp_path / manifest.MANIFEST).read_text())
  assert m["code"] == old["code"]  # the first run's; the history has both
  assert [r["code"]["version"] for r in m["runs"]] == ["0.1.0", "0.2.0"]


def test_large_files_are_identified_by_size_and_sampled_blocks(tmp_path, monkeypatch):
  monkeypatch.setattr(identity, "FULL_HASH_BYTES", 4096)
  monkeypatch.setattr(identity, "SAMPLE_BYTES", 256)
  f = tmp_path / "w.bin"
  f.write_bytes(bytes(range(256)) * 40)
  ident = identity.file_identity(f)
  assert ident.startswith("10240 bytes, sampled sha256 ")
  shutil.copy(f, tmp_path / "copy.bin")  # another mtime
  assert identity.file_identity(tmp_path / "copy.bin") == ident
  for offset in (0, 5000, 10239):  # each sampled block
    data = bytearray(f.read_bytes())
    data[offset] ^= 1
    (tmp_path / "changed.bin").write_bytes(bytes(data))
    assert identity.file_identity(tmp_path / "changed.bin") != ident, offset


# --------------------------------------------------------------------------- one writer per results file


def test_writer_lock_names_its_holder_and_frees_on_release(tmp_path):
  results = tmp_path / "results.jsonl"
  first = WriterLock(results)
  with pytest.raises(ResultsLockedError, match=rf"pid {os.getpid()} on host "):
    WriterLock(results)
  with pytest.raises(ResultsLockedError):
    ResultsStore(results)  # the store takes the same lock before reading or repairing anything
  first.release()
  with ResultsStore(results) as store:
    store.append([{"row_id": "a"}])
  assert (tmp_path / "results.jsonl.lock").exists()  # kept; only the flock matters


def test_a_filesystem_without_locks_warns_and_runs_unlocked(tmp_path, monkeypatch, capsys):
  import errno
  import fcntl

  def no_locks(fd, op):
    raise OSError(errno.ENOLCK, "No locks available")

  monkeypatch.setattr(fcntl, "flock", no_locks)
  with ResultsStore(tmp_path / "results.jsonl") as store:
    store.append([{"row_id": "a"}])
  assert "does not support locks" in capsys.readouterr().err


def test_a_second_sweep_on_the_same_dir_is_refused(pair_dir, tmp_path):
  """Two real sweep processes on one output dir: the second refuses naming the first; no row twice."""
  out = tmp_path / "out"
  lock = out / "results.jsonl.lock"
  first = subprocess.Popen(cli(pair_dir, out), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
  try:
    deadline = time.time() + 240
    while time.time() < deadline and first.poll() is None:
      if lock.exists() and f"pid {first.pid} " in lock.read_text():
        break
      time.sleep(0.02)
    first.send_signal(signal.SIGSTOP)  # holds the lock, frozen wherever it is in the sweep
    assert first.poll() is None, "the first sweep should still be running"
    results = out / "results.jsonl"
    before = results.read_bytes() if results.exists() else None
    second = subprocess.run(cli(pair_dir, out), capture_output=True, text=True)
    one_clear_line(second, f"is being written by another sweep (pid {first.pid} on host")
    assert (results.read_bytes() if results.exists() else None) == before
  finally:
    first.send_signal(signal.SIGCONT)
  _, err = first.communicate(timeout=300)
  assert first.returncode == 0, err[-3000:]
  assert len(rows_of(out)) == 2 * len(POLICIES)  # all rows, none twice


def test_rows_in_other_processes_files_are_not_decoded_again(tmp_path):
  (tmp_path / "results-1.jsonl").write_text(
    '{"row_id": "b"}\n{"row_id": "c", "half'
  )  # c: still being written
  with ResultsStore(tmp_path / "results.jsonl", others=[tmp_path / "results-1.jsonl"]) as store:
    assert store.done("b") and not store.done("c")
    store.append([{"row_id": "a"}, {"row_id": "b"}, {"row_id": "c"}])
  assert [json.loads(x)["row_id"] for x in (tmp_path / "results.jsonl").read_text().splitlines()] == [
    "a",
    "c",
  ]
  assert (
    (tmp_path / "results-1.jsonl").read_text().endswith('"half')
  )  # another process's file: never repaired


# --------------------------------------------------------------------------- corrupt results lines


def test_corrupt_results_line_stops_the_sweep_naming_file_and_line(pair_dir, tmp_path):
  out = tmp_path / "out"
  out.mkdir()
  text = '{"row_id": "x|1"}\nnot json\n{"row_id": "x|2"}\n'
  (out / "results.jsonl").write_text(text)
  one_clear_line(
    subprocess.run(cli(pair_dir, out), capture_output=True, text=True), "results.jsonl: corrupt line 2"
  )
  assert (out / "results.jsonl").read_text() == text and not (out / manifest.MANIFEST).exists()
  (out / "results.jsonl").write_text('{"row_id": "x|1"}\n["a list"]\n')
  with pytest.raises(CorruptResultsError, match="corrupt line 2 \\(not a results row"):
    ResultsStore(out / "results.jsonl")


# --------------------------------------------------------------------------- flags and distributed settings


@pytest.mark.parametrize(
  "module,config",
  [
    ("experiments.sweep", "configs/demo.py"),
    ("experiments.training.train", "configs/train_teacher.py"),
    ("experiments.training.distill", "configs/distill.py"),
  ],
)
def test_unknown_config_key_is_one_clear_line(module, config):
  root = Path(__file__).resolve().parents[1]
  r = subprocess.run(
    [sys.executable, "-m", module, f"--config={config}", "--config.no_such_key=1"],
    capture_output=True,
    text=True,
    cwd=root,
  )
  one_clear_line(r, "unknown config key 'no_such_key' in --config.no_such_key")
  r = subprocess.run(
    [sys.executable, "-m", module, "--config.batch_size=1"], capture_output=True, text=True, cwd=root
  )
  one_clear_line(r, "Unknown command line flag")  # an override without --config


def _free_port() -> int:
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


@pytest.mark.parametrize(
  "dist,message",
  [
    (dict(num_processes=2), "num_processes=2 given but distributed.enabled is False"),
    (dict(process_id=1), "process_id=1 given but distributed.enabled is False"),
    (dict(enabled=True, coordinator_address="127.0.0.1:1234", num_processes=2, process_id=2), "out of range"),
    (dict(enabled=True, coordinator_address="127.0.0.1:1234", num_processes=0), "num_processes must be >= 1"),
    (dict(enabled=True, coordinator_address="localhost", num_processes=2), "is not HOST:PORT"),
    (dict(enabled=True, num_processes=2), "needs distributed.coordinator_address"),
  ],
)
def test_distributed_settings_that_cannot_work(pair_dir, tmp_path, dist, message):
  cfg = sweep_config(pair_dir, tmp_path / "out")
  cfg.distributed.update(dist)
  with pytest.raises(DistributedConfigError, match=message):
    run_sweep(cfg, progress=False)
  assert not (tmp_path / "out").exists()


def test_coordinator_port_in_use_is_a_clear_error(pair_dir, tmp_path):
  with socket.socket() as busy:
    busy.bind(("127.0.0.1", 0))
    busy.listen()
    port = busy.getsockname()[1]
    cfg = sweep_config(pair_dir, tmp_path / "out")
    cfg.distributed.update(dict(enabled=True, coordinator_address=f"127.0.0.1:{port}", num_processes=2))
    with pytest.raises(DistributedConfigError, match=f"port {port} .* already in use"):
      run_sweep(cfg, progress=False)
  assert not (tmp_path / "out").exists()


def test_unreachable_coordinator_is_a_clear_error_within_the_timeout(pair_dir, tmp_path):
  out = tmp_path / "out"
  flags = [
    "--config.distributed.enabled=True",
    f"--config.distributed.coordinator_address=127.0.0.1:{_free_port()}",
    "--config.distributed.num_processes=2",
    "--config.distributed.process_id=1",
  ]
  start = time.time()
  r = subprocess.run(
    cli(pair_dir, out, *flags, config_lines=["c.distributed.initialization_timeout = 3"]),
    capture_output=True,
    text=True,
    timeout=120,
  )
  one_clear_line(r, "process 1 of 2 could not reach the coordinator at 127.0.0.1:")
  assert time.time() - start < 60 and not out.exists()

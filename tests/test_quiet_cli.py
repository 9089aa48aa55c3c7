"""CLIs are quiet about backends nobody asked for (model.startup_logs), and `--verbose` shows them.

One sweep through the CLI (jax and matplotlib both start) on a machine made to look like the ones
that print these lines: jax's TPU probe fails here anyway (absl prints its INFO line), an NVIDIA
device file is reported present without a CUDA jaxlib, and matplotlib builds its font cache in a
fresh config dir, its 5-second notice due at once.
"""

import os
import subprocess
import sys
from pathlib import Path

from sweep_configs import sweep_argv, write_config_file

from model.startup_logs import VERBOSE_ENV

ROOT = Path(__file__).resolve().parents[1]
# Runs `python -m MODULE ARGS...` (MODULE ARGS... as this script's arguments) on a provoking machine.
PROVOKE = """
import runpy, sys, threading
from jax._src import hardware_utils

hardware_utils.has_visible_nvidia_gpu = lambda: True


class _Now(threading.Timer):  # matplotlib's 5 s only (jax's 60 s TPU timer is a real warning)
  def __init__(self, interval, function, *args, **kwargs):
    super().__init__(0 if interval == 5 else interval, function, *args, **kwargs)


threading.Timer = _Now
runpy.run_module(sys.argv.pop(1), run_name="__main__", alter_sys=True)
"""
CHATTER = ("libtpu", "TPU", "NVIDIA", "Matplotlib is building the font cache")


def _sweep_stderr(pair_dir: Path, tmp_path: Path, *flags: str) -> list[str]:
  cfg = write_config_file(
    tmp_path / "cfg.py", pair_dir, ["never", "step:1"], num_problems=2, batch_size=2, max_new_tokens=6
  )
  argv = sweep_argv(cfg, tmp_path / "out", *flags)
  assert argv[1:3] == ["-m", "experiments.sweep"]
  env = {k: v for k, v in os.environ.items() if k != VERBOSE_ENV}
  env["MPLCONFIGDIR"] = str(tmp_path / "mpl")  # no font cache yet
  r = subprocess.run(
    [sys.executable, "-c", PROVOKE, *argv[2:]], capture_output=True, text=True, cwd=ROOT, env=env
  )
  assert r.returncode == 0, r.stderr[-3000:]
  assert "sweep done" in r.stdout
  return r.stderr.replace("\r", "\n").splitlines()  # tqdm redraws its bar with \r


def test_sweep_cli_is_quiet_about_backends(pair_dir, tmp_path):
  lines = _sweep_stderr(pair_dir, tmp_path)
  assert not [line for line in lines if any(text in line for text in CHATTER)], lines[-20:]


def test_sweep_cli_verbose_shows_them(pair_dir, tmp_path):
  """The provoking machine does provoke: the font-cache notice and at least one backend line (the
  TPU probe's INFO line where no TPU is found, the NVIDIA line where no CUDA backend runs)."""
  lines = _sweep_stderr(pair_dir, tmp_path, "--verbose")
  assert any("Matplotlib is building the font cache" in line for line in lines), lines[-20:]
  assert any("Unable to initialize backend" in line or "NVIDIA" in line for line in lines), lines[-20:]

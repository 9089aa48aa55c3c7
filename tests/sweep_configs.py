"""A small sweep over the session's tiny model pair, and reading its results back (shared by tests)."""

import json
import sys
from pathlib import Path

from ml_collections import ConfigDict

from configs.base import base_config


def tiny_sweep_config(pair_dir, out, policies, *, num_problems, batch_size, max_new_tokens, **overrides):
  """base_config on the synthetic task with the tiny pair; "e" is frequent in these random models'
  output, so rows have several steps."""
  c = base_config()
  c.output_dir = str(out)
  c.task.num_problems = num_problems
  c.students = [ConfigDict(dict(name="s", path=str(pair_dir / "s"), checkpoint=None))]
  c.teacher.name, c.teacher.path = "t", str(pair_dir / "t")
  c.policies = policies
  c.batch_size = batch_size
  c.max_new_tokens = max_new_tokens
  c.step_delimiter = "e"
  for k, v in overrides.items():
    c[k] = v
  return c


def write_config_file(path: Path, pair_dir, policies, *, num_problems, batch_size, max_new_tokens, lines=()):
  """The same sweep as a config file for the CLI (`--config=path`); `lines` are extra statements on c."""
  path.write_text(
    "from ml_collections import ConfigDict\n"
    "from configs.base import base_config\n"
    "def get_config():\n"
    "  c = base_config()\n"
    f"  c.students = [ConfigDict(dict(name='s', path={str(pair_dir / 's')!r}, checkpoint=None))]\n"
    f"  c.teacher = ConfigDict(dict(name='t', path={str(pair_dir / 't')!r}))\n"
    f"  c.policies = {policies!r}\n"
    f"  c.task.num_problems = {num_problems}\n  c.batch_size = {batch_size}\n"
    f"  c.max_new_tokens = {max_new_tokens}\n  c.step_delimiter = 'e'\n"
    + "".join(f"  {line}\n" for line in lines)
    + "  return c\n"
  )
  return path


def sweep_argv(cfg_file: Path, out: Path, *flags) -> list:
  """The sweep CLI's command line on a config file, writing into `out`."""
  return [
    sys.executable,
    "-m",
    "experiments.sweep",
    f"--config={cfg_file}",
    f"--config.output_dir={out}",
    *flags,
  ]


def rows_of(out: Path) -> dict:
  """results.jsonl by row id; a row written twice fails."""
  rows = {}
  for line in (Path(out) / "results.jsonl").read_text().splitlines():
    r = json.loads(line)
    assert r["row_id"] not in rows, "duplicate row"
    rows[r["row_id"]] = r
  return rows

"""The sweep's one typed config, parsed once from the ml_collections ConfigDict.

Why: the sweep's modules read typed fields, never `.get(key, default)` with the default repeated
where it is read. configs/base.py's `base_config()` stays the one home of the defaults: a key a
config lacks (a config may replace a whole section, `c.teacher = ConfigDict(dict(name=..., path=...))`)
takes base_config()'s value here. "Unset" spellings are decoded here once, to None: -1 (or any
value <= 0) for `limit` and `max_steps`, "" for paths, urls and served model names.

Keys a config adds beyond base_config()'s are not refused here, as before this module: the CLI
refuses overrides of keys a config file lacks (experiments.cli); extra `task` keys are recorded in
the manifest as given.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any

from experiments.tasks.synthetic import SyntheticConfig
from model.errors import UserError

_TASK_KEYS = ("name", "path", "num_problems", "synthetic")


class SweepConfigError(UserError):
  """A sweep config that cannot run as written."""


@dataclasses.dataclass(frozen=True)
class TaskConfig:
  name: str
  path: str | None  # a local file; None: the embedded generator (task "synthetic")
  num_problems: int  # how many the generator makes (no path)
  synthetic: SyntheticConfig | None  # the generator's settings (task "synthetic" only)
  extra: tuple[
    tuple[str, Any], ...
  ] = ()  # other keys as given: no loader reads them; the manifest records them


@dataclasses.dataclass(frozen=True)
class ExemplarsConfig:
  path: str | None  # the few-shot pool (a train split); None: the generator's train split, or none
  task: str  # the pool's task name (the evaluated task's when unset)
  k: int  # exemplars per prompt; 0 = zero-shot
  seed: int
  distinct_answers: bool  # no two exemplars share a final answer


@dataclasses.dataclass(frozen=True)
class StudentConfig:
  """One `students` entry: a model directory, or a training run's checkpoints (experiments.sweep.students)."""

  name: str
  path: str | None
  checkpoint: str | None = None  # a label for a single model
  checkpoints: str | None = None  # a run's checkpoint directory: one student per selected step
  steps: Any = None  # which checkpoints: "all" (None), "every:N", or a list of step numbers


@dataclasses.dataclass(frozen=True)
class TeacherConfig:
  name: str
  path: str | None  # a model directory; or
  url: str | None  # an OpenAI-compatible server
  model: str | None  # the server's model name (None: its first)
  api_key_env: str  # the environment variable holding the server's API key
  timeout_s: float
  retries: int
  api: str  # "completions" or "chat"
  chat_template: str  # a chat teacher's message, with {problem} and {solution}


@dataclasses.dataclass(frozen=True)
class MeshConfig:
  data: int  # -1 = the rest of the devices
  model: int
  # "host": each process's mesh is its own devices (a model must fit on one host); "global": one mesh
  # over every process's devices (SPMD: every process runs every loop call; `model` may span hosts).
  scope: str = "host"


@dataclasses.dataclass(frozen=True)
class DistributedConfig:
  enabled: bool
  coordinator_address: str
  num_processes: int
  process_id: int
  cpu_collectives: str
  initialization_timeout: float  # seconds to wait for the coordinator (and for process 0's manifest)


@dataclasses.dataclass(frozen=True)
class SweepConfig:
  output_dir: str
  task: TaskConfig
  limit: int | None  # first N problems only; None = all
  prompt_style: str
  exemplars: ExemplarsConfig
  students: tuple[StudentConfig, ...]
  teacher: TeacherConfig
  policies: tuple[str, ...]  # specs as given (decode.core.policy.parse_policy parses them)
  matched_random: bool
  recalibrate: bool  # set q= thresholds and matched rates again; rows that used changed ones re-decode
  report_all_rows: bool  # the report covers every row of the dir, not only those this config lists
  seeds: tuple
  batch_size: int
  max_new_tokens: int
  max_steps: int | None  # None = no step limit
  temperature: float
  top_k: int
  top_p: float
  step_delimiter: str
  stop_at_answer: bool  # rows end where their answer is complete (the prompt style's stop rule)
  fork: bool
  shared_prefix: bool
  teacher_chunk: int
  teacher_sub_batches: int
  dtype: str
  scan_layers: bool
  mesh: MeshConfig
  student_rules: str
  teacher_rules: str
  distributed: DistributedConfig


def _reader(given, defaults):
  """key -> `given`'s value, or base_config()'s where `given` (a ConfigDict or dict) lacks the key."""
  return lambda key: given[key] if given is not None and key in given else defaults[key]


def _positive_or_none(value):
  """The "-1 = none" convention: any value <= 0 (or None) means no limit."""
  return value if value is not None and value > 0 else None


def _synthetic(given) -> SyntheticConfig:
  """The generator's settings; a key it lacks is one clear error (it was a TypeError traceback)."""
  settings = {k: tuple(v) if isinstance(v, (list, tuple)) else v for k, v in given.items()}
  known = [f.name for f in dataclasses.fields(SyntheticConfig)]
  unknown = [k for k in settings if k not in known]
  if unknown:
    raise SweepConfigError(
      f"config.task.synthetic has unknown key(s) {', '.join(map(repr, unknown))}; the generator's: {', '.join(known)}"
    )
  return SyntheticConfig(**settings)


def _task(given, defaults) -> TaskConfig:
  read = _reader(given, defaults)
  name = read("name")
  return TaskConfig(
    name=name,
    path=read("path") or None,
    num_problems=read("num_problems"),
    synthetic=_synthetic(read("synthetic")) if name == "synthetic" else None,
    extra=tuple((k, v) for k, v in given.items() if k not in _TASK_KEYS),
  )


def _exemplars(given, defaults, task: TaskConfig) -> ExemplarsConfig:
  read = _reader(given, defaults)
  return ExemplarsConfig(
    path=read("path") or None,
    task=read("task") or task.name,
    k=int(read("k")),
    seed=read("seed"),
    distinct_answers=bool(read("distinct_answers")),
  )


def student_config(entry) -> StudentConfig:
  """One `students` entry (a ConfigDict or dict); name, path and checkpoint default as base_config()'s."""
  base = default_dict().students[0]
  read = _reader(entry, base)
  optional = _reader(entry, {"checkpoints": None, "steps": None})  # not in base_config's entry: absent
  return StudentConfig(
    name=read("name") or base.name,
    path=read("path") or None,
    checkpoint=read("checkpoint"),
    checkpoints=optional("checkpoints") or None,
    steps=optional("steps"),
  )


def _teacher(given, defaults) -> TeacherConfig:
  read = _reader(given, defaults)
  return TeacherConfig(
    name=read("name") or defaults.name,
    path=read("path") or None,
    url=read("url") or None,
    model=read("model") or None,
    api_key_env=read("api_key_env") or defaults.api_key_env,
    timeout_s=float(read("timeout_s")),
    retries=int(read("retries")),
    api=str(read("api")),
    chat_template=str(read("chat_template")),
  )


def _section(cls, given, defaults):
  """A flat section: every field read from `given`, or base_config()'s value."""
  read = _reader(given, defaults)
  return cls(**{f.name: read(f.name) for f in dataclasses.fields(cls)})


def parse_config(cfg) -> SweepConfig:
  """The typed config of a ConfigDict (a SweepConfig is returned as is)."""
  if isinstance(cfg, SweepConfig):
    return cfg
  base = default_dict()
  read = _reader(cfg, base)
  task = _task(read("task"), base.task)
  max_steps = _positive_or_none(read("max_steps"))
  return SweepConfig(
    output_dir=read("output_dir"),
    task=task,
    limit=_positive_or_none(read("limit")),
    prompt_style=read("prompt_style"),
    exemplars=_exemplars(read("exemplars"), base.exemplars, task),
    students=tuple(student_config(s) for s in read("students")),
    teacher=_teacher(read("teacher"), base.teacher),
    policies=tuple(read("policies")),
    matched_random=bool(read("matched_random")),
    recalibrate=bool(read("recalibrate")),
    report_all_rows=bool(read("report_all_rows")),
    seeds=tuple(read("seeds")),
    batch_size=read("batch_size"),
    max_new_tokens=int(read("max_new_tokens")),
    max_steps=int(max_steps) if max_steps is not None else None,
    temperature=float(read("temperature")),
    top_k=int(read("top_k")),
    top_p=float(read("top_p")),
    step_delimiter=read("step_delimiter"),
    stop_at_answer=bool(read("stop_at_answer")),
    fork=read("fork"),
    shared_prefix=read("shared_prefix"),
    teacher_chunk=read("teacher_chunk"),
    teacher_sub_batches=read("teacher_sub_batches"),
    dtype=read("dtype"),
    scan_layers=read("scan_layers"),
    mesh=_section(MeshConfig, read("mesh"), base.mesh),
    student_rules=read("student_rules"),
    teacher_rules=read("teacher_rules"),
    distributed=_section(DistributedConfig, read("distributed"), base.distributed),
  )


@functools.cache
def default_dict():
  """configs/base.py's `base_config()`, read once (the one home of the defaults)."""
  from configs.base import base_config

  return base_config()


@functools.cache
def defaults() -> SweepConfig:
  """base_config() as a SweepConfig: what "left at its default" compares against."""
  return parse_config(default_dict())

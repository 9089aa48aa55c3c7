"""What a row IS: the settings that define a row's content, as the manifest records and compares them.

Why apart from the extent (extent.py): a resume with other content would silently mix two sweeps
under one report, so it is refused; a resume with another extent (more problems, policies, seeds,
students) grows the sweep. Normalized as the sweep reads them: defaults filled, -1 = none, files by
content (experiments.sweep.identity), the synthetic generator by the settings that differ from its
defaults.
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any

from ml_collections import ConfigDict

from experiments.sweep.config import ExemplarsConfig, SweepConfig, TaskConfig
from experiments.sweep.identity import file_identity, model_identity

CONTENT_KEYS = (
  "task",
  "prompt_style",
  "exemplars",
  "teacher",
  "max_new_tokens",
  "max_steps",
  "temperature",
  "top_k",
  "top_p",
  "step_delimiter",
  "stop_at_answer",
  "dtype",
)


def student_label(name: str, checkpoint: str | None) -> str:
  """A student's key in the manifest: its name, or name@checkpoint for one of a run's checkpoints."""
  return name if checkpoint is None else f"{name}@{checkpoint}"


def _plain(value: Any) -> Any:
  """JSON's view of a config value (ConfigDicts -> dicts, tuples -> lists), as a reread manifest holds it."""
  if isinstance(value, ConfigDict):
    value = value.to_dict()
  return json.loads(json.dumps(value))


def _synthetic(task: TaskConfig) -> dict:
  """The generator's settings that differ from its defaults: an explicit default equals an omitted
  one, and a knob added later (at its default) does not make older output dirs look different."""
  from experiments.tasks.synthetic import SyntheticConfig

  settings = _plain(dataclasses.asdict(task.synthetic))
  defaults = _plain(dataclasses.asdict(SyntheticConfig()))
  return {k: v for k, v in settings.items() if v != defaults[k]}


def _task(task: TaskConfig) -> dict:
  """The task source (its file, or the generator's settings): how many problems is the extent."""
  out = {"name": task.name}
  if task.path:
    out["file"] = file_identity(task.path, "task file")
  else:  # only the embedded generator reads these; its problems do not depend on how many it makes
    out["synthetic"] = _synthetic(task) if task.synthetic is not None else None
  out.update({k: _plain(v) for k, v in task.extra})
  return out


def _exemplars(ex: ExemplarsConfig, chosen: list[str]) -> dict:
  if not ex.k:
    return {"k": 0}  # zero-shot: the other exemplar settings are unused
  return {
    "k": ex.k,
    "seed": ex.seed,
    "distinct_answers": ex.distinct_answers,
    "task": ex.task,
    "file": file_identity(ex.path, "exemplar file") if ex.path else None,
    "chosen": list(chosen),  # the exemplars' ids, fixed when the sweep began (problems.py)
  }


def _teacher(cfg: SweepConfig) -> dict | None:
  t = cfg.teacher
  if t.path:
    return {"name": t.name, "model": model_identity(t.path)}
  if not t.url:
    return None
  served = {"name": t.name, "url": t.url, "model": t.model}
  # A chat teacher's rows depend on the message it is sent (completions manifests stay as they were).
  return served if t.api == "completions" else {**served, "api": t.api, "chat_template": t.chat_template}


def content_settings(cfg: SweepConfig, chosen: list[str]) -> dict:
  """CONTENT_KEYS of a validated config, normalized as the sweep reads them (defaults, -1 = none)."""
  content = {
    "task": _task(cfg.task),
    "prompt_style": cfg.prompt_style,
    "exemplars": _exemplars(cfg.exemplars, chosen),
    "teacher": _teacher(cfg),
    "max_new_tokens": cfg.max_new_tokens,
    "max_steps": cfg.max_steps,
    "temperature": cfg.temperature,
    "top_k": cfg.top_k,
    "top_p": cfg.top_p,
    "step_delimiter": cfg.step_delimiter,
    "stop_at_answer": cfg.stop_at_answer,
    "dtype": cfg.dtype,
  }
  return _plain(content)

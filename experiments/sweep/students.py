"""A sweep's students: model directories, and the checkpoints of a training run, one student per step.

A `config.students` entry is either a model (`name`, `path`: a Hugging Face directory) or a run's
checkpoints (`name`, `checkpoints`: a directory, `steps`: which ones, and for orbax checkpoints
`path`: the HF directory whose config.json and tokenizer the checkpoints share):

- an orbax `CheckpointManager` directory (numbered step folders, as experiments.training.train
  writes `workdir/checkpoints`): each step's params are restored straight from the checkpoint,
  with no Hugging Face export per step;
- a directory of Hugging Face checkpoint folders (`step_150/`, `checkpoint-2000/`, revisions saved
  side by side as OLMo and Pythia publish them): each folder with a config.json is a student.

`steps`: "all", "every:N" (every N-th checkpoint in step order, the last always kept), or a list of
step numbers. Each expanded student keeps the entry's name and is labelled by its checkpoint
(`step_150`), so the report's checkpoint analysis reads them as one training run.
"""

from __future__ import annotations

import re
from pathlib import Path

from experiments.sweep.config import StudentConfig, student_config
from experiments.sweep.grid import ModelEntry
from model.errors import ModelLoadError, UserError
from model.lm import LanguageModel

_STEP = re.compile(r"(\d+)$")


class StudentConfigError(UserError):
  """A students entry that names no model, or checkpoints that cannot be found or selected."""


def _step_of(name: str) -> int | None:
  m = _STEP.search(name)
  return int(m.group(1)) if m else None


def _select(steps: list[int], selection, where: str) -> list[int]:
  """The chosen steps, in step order."""
  if selection in (None, "all"):
    return steps
  if isinstance(selection, str) and re.fullmatch(r"every:\d+", selection):
    n = int(selection.split(":")[1])
    if n < 1:
      raise StudentConfigError(f"{where}: steps='every:N' needs N >= 1")
    picked = steps[::n]
    return picked + ([steps[-1]] if steps and steps[-1] not in picked else [])
  if isinstance(selection, (list, tuple)) and all(isinstance(s, int) for s in selection):
    missing = sorted(set(selection) - set(steps))
    if missing:
      raise StudentConfigError(f"{where}: steps {missing} are not among the checkpoints {steps}")
    return [s for s in steps if s in set(selection)]
  raise StudentConfigError(
    f"{where}: steps must be 'all', 'every:N' or a list of step numbers, got {selection!r}"
  )


def is_orbax_run(root: Path) -> bool:
  """A CheckpointManager directory: numbered step folders, each with orbax's own metadata."""
  return any(
    d.is_dir() and d.name.isdigit() and (d / "_CHECKPOINT_METADATA").exists() for d in root.iterdir()
  )


def expand(entry) -> list[ModelEntry]:
  """One ModelEntry per model: the entry itself, or one per selected checkpoint of a run.

  `entry`: a StudentConfig, or a `students` entry as written (a ConfigDict), parsed here.
  """
  if not isinstance(entry, StudentConfig):
    entry = student_config(entry)
  name = entry.name
  if not entry.checkpoints:
    if not entry.path:
      raise StudentConfigError(f"student {name!r} needs `path` (a model directory) or `checkpoints`")
    return [ModelEntry(name, entry.path, entry.checkpoint)]
  root = Path(entry.checkpoints)
  where = f"student {name!r} (checkpoints {root})"
  if not root.is_dir():
    raise StudentConfigError(f"{where}: the directory does not exist")
  if is_orbax_run(root):
    if not entry.path or not (Path(entry.path) / "config.json").exists():
      raise StudentConfigError(
        f"{where}: orbax checkpoints hold params only; set `path` to the run's Hugging Face directory "
        "(its config.json and tokenizer), e.g. the workdir/hf that experiments.training.train exports"
      )
    steps = sorted(int(d.name) for d in root.iterdir() if d.is_dir() and d.name.isdigit())
    chosen = _select(steps, entry.steps, where)
    return [
      ModelEntry(name, str(root / str(s)), f"step_{s}", source="orbax", config_dir=entry.path) for s in chosen
    ]
  folders = {
    _step_of(d.name): d
    for d in root.iterdir()
    if (d / "config.json").exists() and _step_of(d.name) is not None
  }
  if not folders:
    raise StudentConfigError(
      f"{where}: no checkpoint folders (step_N/, checkpoint-N/ with a config.json) and no orbax steps"
    )
  chosen = _select(sorted(folders), entry.steps, where)
  return [ModelEntry(name, str(folders[s]), folders[s].name) for s in chosen]


def student_entries(students: tuple[StudentConfig, ...]) -> list[ModelEntry]:
  entries = [e for s in students for e in expand(s)]
  if not entries:
    raise StudentConfigError("config.students is empty: name at least one student model directory")
  return entries


def load_student(
  entry: ModelEntry, *, dtype: str, mesh=None, rules=None, scan_layers: bool = True
) -> LanguageModel:
  """The student's model: a Hugging Face directory, or an orbax step with its run's config and tokenizer."""
  from model.hf_import import load_model

  if entry.source != "orbax":
    return load_model(
      entry.path, dtype=dtype, mesh=mesh, rules=rules, name=entry.name, scan_layers=scan_layers
    )
  from model.checkpoint import restore_training_params
  from model.hf_import import eos_token_ids, load_config, load_tokenizer

  cfg, hf_config = load_config(entry.config_dir, dtype)
  cfg = cfg.replace(scan_layers=scan_layers)
  try:
    params = restore_training_params(entry.path, cfg, mesh=mesh, rules=rules)
  except ModelLoadError as e:
    raise ModelLoadError(f"student {entry.name!r} {entry.checkpoint}: {e}") from e
  return LanguageModel(
    cfg=cfg,
    params=params,
    tokenizer=load_tokenizer(entry.config_dir),
    name=entry.name,
    eos_token_ids=eos_token_ids(entry.config_dir, hf_config),
  )

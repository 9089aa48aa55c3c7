"""The sweep's teacher: a model directory (`teacher.path`) or a completions server (`teacher.url`).

A directory's model shares the compiled loop when its tokenizer is the student's and goes through
the text bridge otherwise; a server always goes through the bridge (decode.bridge.pairing). The server's
API key is read from the environment variable `teacher.api_key_env` names, never from the config.
"""

from __future__ import annotations

from decode.errors import PolicyError
from decode.serving.client import ServedTeacher, is_url
from experiments.sweep.config import SweepConfig, TeacherConfig
from model.errors import ModelLoadError, UserError
from model.hf_import import model_exists


def check_teacher(t: TeacherConfig, policies: list) -> None:
  """Before anything is loaded or written: one teacher at most, and one where a policy needs it."""
  path, url = t.path, t.url
  if path and url:
    raise UserError("set config.teacher.path (a model directory) or config.teacher.url (a server), not both")
  if not (path or url) and any(p.needs_teacher for p in policies):
    raise PolicyError("a policy needs a teacher but config.teacher.path and config.teacher.url are empty")
  if url and not is_url(url):
    raise UserError(
      f"config.teacher.url {url!r} must start with http:// or https:// (e.g. http://HOST:8000/v1)"
    )
  if path and not model_exists(path):
    raise ModelLoadError(f"teacher {path} does not exist (a model directory or .gguf file)")


def load_teacher(cfg: SweepConfig, mesh=None, rules=None):
  """A LanguageModel, a ServedTeacher (checked to answer), or None."""
  t = cfg.teacher
  if t.url:
    return ServedTeacher(
      t.url,
      model=t.model,
      api_key_env=t.api_key_env,
      timeout_s=t.timeout_s,
      retries=t.retries,
      name=t.name,
      api=t.api,
      chat_template=t.chat_template,
    )
  if not t.path:
    return None
  from model.hf_import import load_model

  return load_model(t.path, dtype=cfg.dtype, mesh=mesh, rules=rules, name=t.name, scan_layers=cfg.scan_layers)

"""Which decoder a (student, teacher) pair gets: one compiled loop, or the text bridge.

A teacher that shares the student's tokenizer writes in the loop (GuidedDecoder: one program, no
host round trips). Any other teacher -- another tokenizer, or a server (`http://HOST:PORT/v1`) --
writes through the text bridge at step boundaries (BridgeDecoder). The same-tokenizer path is
untouched by the bridge.
"""

from __future__ import annotations

import dataclasses

from decode.bridge.decoder import BridgeDecoder
from decode.bridge.teachers import LocalTeacher
from decode.core.vocab import tokenizer_mismatch
from decode.host.guided import GuidedDecoder
from decode.host.options import DecodeOptions
from model.lm import LanguageModel


def same_tokenizer(a, b) -> bool:
  """The loop's rule (same vocabulary, same EOS); embedding sizes are the decoder's own check."""
  return tokenizer_mismatch(a, b) is None


def make_decoder(
  student: LanguageModel,
  teacher=None,
  options: DecodeOptions | None = None,
  *,
  mesh=None,
  student_rules=(),
  teacher_rules=(),
  **overrides,
) -> GuidedDecoder | BridgeDecoder:
  """teacher: None, a LanguageModel, or an object with `complete` (decode.serving.client.ServedTeacher)."""
  is_model = teacher is None or isinstance(teacher, LanguageModel)
  if is_model and (
    teacher is None
    or teacher.tokenizer is None
    or student.tokenizer is None
    or same_tokenizer(student.tokenizer, teacher.tokenizer)
  ):
    return GuidedDecoder(
      student,
      teacher,
      options,
      mesh=mesh,
      student_rules=student_rules,
      teacher_rules=teacher_rules,
      **overrides,
    )
  if is_model:
    opts = dataclasses.replace(options or DecodeOptions(), **overrides)
    teacher = LocalTeacher(teacher, opts, mesh=mesh, rules=teacher_rules)
  return BridgeDecoder(student, teacher, options, mesh=mesh, student_rules=student_rules, **overrides)

"""What "the answer is complete" means for a task: plain data (no JAX), read by configs and options."""

from __future__ import annotations

import dataclasses

from decode.errors import DecodeInputError


@dataclasses.dataclass(frozen=True)
class StopRule:
  """When a row's answer is complete, so it stops (decode.core.stops turns it into a token table).

  texts: the row ends as soon as its generated text contains one of these (case-sensitive), like
    lm-eval-harness's `until`.
  answer_markers: the row ends at the newline of a line where a marker (lowercase, matched without
    case) is followed by a number: the end of a final-answer line ("#### 18", "The answer is 18.").
  heading_markers: those answer markers that also open numbered headings: after them a number,
    punctuation and a word ("#### 1. Count the eggs") is a heading, not an answer.
  The task's prompt style says which (experiments.tasks.prompts.stop_rule); empty: no stop.
  """

  texts: tuple[str, ...] = ()
  answer_markers: tuple[str, ...] = ()
  heading_markers: tuple[str, ...] = ()

  def __post_init__(self):
    for what, values in (
      ("stop text", self.texts),
      ("answer marker", self.answer_markers),
      ("heading marker", self.heading_markers),
    ):
      if isinstance(values, str) or any(not isinstance(v, str) or not v for v in values):
        raise DecodeInputError(f"each {what} must be a non-empty string, got {values!r}")
    for m in self.answer_markers:
      if m != m.lower() or "\n" in m or any(c.isdigit() for c in m):
        raise DecodeInputError(
          f"answer marker {m!r} must be lowercase, one line and hold no digit (it precedes the number)"
        )
    if not set(self.heading_markers) <= set(self.answer_markers):
      raise DecodeInputError(f"heading markers {self.heading_markers} must be answer markers too")

  @property
  def empty(self) -> bool:
    return not (self.texts or self.answer_markers)

"""One row of the text bridge on the host: its tokens, authors, steps and costs between loop calls.

The step rule is the loop's (decode.core.advance.step_boundary) on the student's tokens; a teacher step
is text, and it ends at the first stop string (the delimiter) that follows non-whitespace text.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from decode.api import Sampling
from decode.bridge.row_caches import RowCache
from decode.core.advance import step_boundary
from decode.core.policy import Policy
from decode.core.state import STUDENT, TEACHER
from decode.core.vocab import VocabMasks
from decode.host.results import RowResult


@dataclasses.dataclass
class BridgeResult(RowResult):
  """A RowResult whose teacher worked in its own tokens: token_ids, authors and step_ids are in the
  student's tokens; teacher_tokens counts the tokens the teacher wrote in its own tokenizer."""

  # Teacher tokens read: the prompt tokens its calls did not hold in a cache already (an in-process
  # teacher keeps the row's cache between boundaries; a served teacher's whole prompt counts).
  teacher_read: int = 0
  round_trips: int = 0  # teacher calls (host round trips) at step boundaries
  # sha256 (first 16 hex digits) of the exact text each teacher call sent (`TextTeacher.request_text`:
  # the prompt, or a chat teacher's filled template): which requests made the row, for an audit.
  teacher_requests: list[str] = dataclasses.field(default_factory=list)


def result_from_record(rec: dict) -> RowResult:
  """A results.jsonl record as the result its decoder made: a bridged row's carries the bridge's
  costs (a fork's copied row then keeps them), a loop row's does not."""
  return (BridgeResult if "round_trips" in rec else RowResult).from_record(rec)


@dataclasses.dataclass
class BridgeRow:
  prompt: list[int]  # the prompt in the student's tokens
  text: str  # the prompt text the teacher reads
  policy: Policy
  sampling: Sampling  # this row's
  ids: list[int]  # generated tokens so far (student's tokenizer; a forked prefix included)
  authors: list[int]
  step_ids: list[int]
  steps_done: int
  at_start: bool = True  # the next token starts a step
  content: bool = False  # the current step holds non-whitespace text
  writer: int | None = None  # who writes the current step; None at a step start (not yet decided)
  step_teacher_tokens: int = 0  # teacher tokens written in the current step (hint limit)
  triggered: int = 0  # steps given to the teacher by a trigger (budget)
  done: bool = False
  error: str | None = None
  answer_step: int | None = None  # the step that completed the answer (the decoder's stop rule)
  teacher_tokens: int = 0
  teacher_read: int = 0
  round_trips: int = 0
  empty_trips: int = 0  # teacher round trips in the current step that added no text
  teacher_requests: list[str] = dataclasses.field(default_factory=list)
  uncertainty: list[list[float]] = dataclasses.field(default_factory=list)
  # Each model's KV cache of this row between its loop calls (a round reads only what is new).
  student_cache: RowCache = dataclasses.field(default_factory=RowCache)
  teacher_cache: RowCache = dataclasses.field(default_factory=RowCache)

  def teachers_turn(self) -> bool:
    window = self.policy.in_window(self.steps_done + 1)
    return not self.done and (self.writer == TEACHER or (self.at_start and window))

  def next_window_step(self) -> int | None:
    """The first step after the coming one that the window gives the teacher."""
    return self.policy.next_window_step(self.steps_done)

  def drop_unneeded_caches(self) -> None:
    """Frees the caches the row will not read again: both once it is done, the teacher's once its
    fixed window has passed (no trigger, and neither the coming step nor a later one is the teacher's)."""
    passed = self.policy.fixed_timing and self.writer != TEACHER
    passed = passed and not self.policy.in_window(self.steps_done + 1) and self.next_window_step() is None
    if self.done or passed:
      self.teacher_cache.held = None
    if self.done:
      self.student_cache.held = None

  def append(self, ids: list[int], author: int, ended: bool) -> None:
    """Tokens of the current step (author's); `ended`: they close it."""
    self.ids += ids
    self.authors += [author] * len(ids)
    self.step_ids += [self.steps_done + 1] * len(ids)
    if ended:
      self.steps_done += 1
    self.at_start = ended
    self.writer = None if ended else self.writer
    self.content = False if ended else self.content
    self.step_teacher_tokens = 0 if ended else self.step_teacher_tokens
    self.empty_trips = 0 if ended else self.empty_trips

  def end_at_answer(self, n: int) -> None:
    """The answer is complete with the row's first `n` tokens: the rest (a teacher's text past the
    stop) is dropped, as the loop never writes it, and a step cut short is not counted as done."""
    if n < len(self.ids):
      self.ids, self.authors, self.step_ids = self.ids[:n], self.authors[:n], self.step_ids[:n]
      self.steps_done = self.step_ids[-1] - 1 if self.step_ids else self.steps_done
    self.done, self.answer_step = True, self.steps_done

  def result(self, tokenizer) -> BridgeResult:
    teacher_ids = [t for t, a in zip(self.ids, self.authors) if a == TEACHER]
    return BridgeResult(
      token_ids=list(self.ids),
      authors=list(self.authors),
      step_ids=list(self.step_ids),
      completion=tokenizer.decode(self.ids, skip_special_tokens=True),
      policy=self.policy.spec,
      student_tokens=self.authors.count(STUDENT),
      teacher_tokens=self.teacher_tokens,
      teacher_prefilled=self.teacher_read + self.teacher_tokens,
      switches=sum(a != b for a, b in zip(self.authors, self.authors[1:])),
      intervention_steps=sorted({s for s, a in zip(self.step_ids, self.authors) if a == TEACHER}),
      num_steps=self.steps_done,
      teacher_text=tokenizer.decode(teacher_ids, skip_special_tokens=True),
      error=self.error,
      # Up to the answer's step, as the loop records it (a step begun after it is none of the solution).
      step_uncertainty=self.uncertainty if self.answer_step is None else self.uncertainty[: self.answer_step],
      answer_step=self.answer_step,
      teacher_read=self.teacher_read,
      round_trips=self.round_trips,
      teacher_requests=list(self.teacher_requests),
    )


def trigger_fires(row: BridgeRow, metric: list[float] | None, uniform) -> bool:
  """The policy's trigger rule (`PolicyRule.trigger_fires`, as in the loop) at a step start, from
  the student's (entropy, max prob, margin) there (None: not computed). `uniform()`: the policy's
  draw at this position, asked only of a random trigger (a device call on the host)."""
  p = row.policy
  u = uniform() if p.random_trigger() else float("nan")
  entropy, maxprob, margin = metric if metric is not None else (float("nan"),) * 3
  return bool(p.trigger_fires(row.steps_done + 1, entropy, maxprob, margin, u, row.triggered))


def kept_tokens(
  row: BridgeRow, new: list[int], metrics: list, vocab: VocabMasks, uniform_at
) -> tuple[int, bool]:
  """How many of a student call's new tokens stand, and whether a trigger gave the next step away.

  The loop starts each call at a step start with an empty step; a row that continues a step (after
  a hint) may already hold text, so a delimiter can end the step where the loop did not see it end:
  the tokens stand up to that delimiter. `metrics` are the loop's (entropy, max prob, margin) at
  each step start it saw among `new`; a trigger that fires at a step start cuts the tokens there.
  Records the uncertainty of the step starts that stand. `uniform_at(j)`: the policy's uniform
  draw at new token j (random:P).
  """
  true_c, loop_c = np.bool_(row.content), np.bool_(False)
  true_start, loop_start, m = row.at_start, True, 0
  for j, t in enumerate(new):
    metric = None
    if loop_start:
      metric, m = (metrics[m] if m < len(metrics) else None), m + 1
    if true_start:
      if metric is not None and row.policy.records_uncertainty():
        row.uncertainty.append(metric)
      if trigger_fires(row, metric, lambda: uniform_at(j)):
        return j, True
    true_end, true_c = step_boundary(true_c, vocab.content[t], vocab.delimiter[t])
    loop_end, loop_c = step_boundary(loop_c, vocab.content[t], vocab.delimiter[t])
    if true_end != loop_end:  # only the first step of a continued one can differ
      return j + 1, False
    if true_end:
      true_c = loop_c = np.bool_(False)
    true_start = loop_start = bool(true_end)
  return len(new), False


def append_student(row: BridgeRow, tokens: list[int], vocab: VocabMasks) -> None:
  """The student's tokens, one by one, with the loop's step rule."""
  for t in tokens:
    ended, content = step_boundary(np.bool_(row.content), vocab.content[t], vocab.delimiter[t])
    row.content, row.writer = bool(content), STUDENT
    row.append([int(t)], STUDENT, bool(ended))

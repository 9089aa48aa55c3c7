"""A loop call's final state -> one RowResult per prompt (host side)."""

from __future__ import annotations

import dataclasses

import jax
import numpy as np

from decode.core.state import TEACHER, LoopState
from decode.core.stops import StopTable


@dataclasses.dataclass
class RowResult:
  """One row's output; token lists cover generated tokens only (a forked prefix included)."""

  token_ids: list[int]
  authors: list[int]  # 0 student / 1 teacher per generated token
  step_ids: list[int]  # 1-based step of each generated token
  completion: str
  policy: str
  student_tokens: int
  teacher_tokens: int
  # Tokens the teacher's forward processed in this call, catch-up and decode together (the loop's
  # `teacher_forwarded`); the name predates that and stays, as results files carry it.
  teacher_prefilled: int
  switches: int
  intervention_steps: list[int]
  num_steps: int
  teacher_text: str
  error: str | None = None  # why the row stopped early and must not be scored (non-finite logits)
  # The student's [entropy, max prob, margin] before each step it started (student-only and trigger
  # rows; empty where not computed): calibrates `entropy:q=...` triggers.
  step_uncertainty: list[list[float]] = dataclasses.field(default_factory=list)
  # The step whose text completed the answer (decode.core.stops), counted as `num_steps` is: the row
  # stopped there, and a step it had only begun (a "Question:" it started) is not counted. None: the
  # row ran to EOS or a limit (or decoded with no stop rule). Rates and calibration count steps up to it.
  answer_step: int | None = None

  def to_json(self) -> dict:
    return dataclasses.asdict(self)

  @classmethod
  def from_record(cls, rec: dict) -> RowResult:
    """From a results.jsonl record (which carries more keys than a RowResult)."""
    return cls(**{f.name: rec[f.name] for f in dataclasses.fields(cls) if f.name in rec})


@dataclasses.dataclass
class LoopStats:
  teacher_calls: int  # iterations in which the teacher's forward ran
  iterations: int


def fetch(tree):
  """Host copies of a pytree's arrays; on a mesh over several processes (whose arrays no process holds
  whole) every process gathers every row."""
  if all(getattr(x, "is_fully_addressable", True) for x in jax.tree.leaves(tree)):
    return jax.device_get(tree)
  from jax.experimental import multihost_utils

  return multihost_utils.process_allgather(tree, tiled=True)


def unpack_rows(
  state: LoopState, gen_starts: list[int], specs: list[str], tokenizer, stops: StopTable | None = None
) -> list[RowResult]:
  """One device_get of what rows need, then RowResults for the first len(gen_starts) rows.

  `stops`: the call's stop table (VocabMasks.stops), which says which rows completed an answer."""
  b, st, c = fetch((state.buffers, state.step, state.counters))
  answered = np.zeros(len(b.length), bool) if stops is None else np.asarray(stops.accepting)[st.stop_state]
  out = []
  for i, (gen_start, spec) in enumerate(zip(gen_starts, specs)):
    end = int(b.length[i])
    answer_step = int(st.steps_done[i]) if answered[i] else None
    last_step = answer_step if answer_step is not None else np.inf
    ids = b.tokens[i, gen_start:end].tolist()
    authors = b.authors[i, gen_start:end].tolist()
    steps = b.step_ids[i, gen_start:end].tolist()
    teacher_ids = [t for t, a in zip(ids, authors) if a == TEACHER]
    out.append(
      RowResult(
        token_ids=ids,
        authors=authors,
        step_ids=steps,
        completion=tokenizer.decode(ids, skip_special_tokens=True),
        policy=spec,
        student_tokens=int(c.student_tokens[i]),
        teacher_tokens=int(c.teacher_tokens[i]),
        teacher_prefilled=int(c.teacher_forwarded[i]),
        switches=int(c.switches[i]),
        intervention_steps=sorted({s for s, a in zip(steps, authors) if a == TEACHER}),
        num_steps=int(st.steps_done[i]),
        teacher_text=tokenizer.decode(teacher_ids, skip_special_tokens=True),
        # The shortest decimal that reads back as the same float32 (not rounded to 6 places): q=
        # triggers are calibrated to thresholds equal to recorded values, and the loop compares in
        # float32, so a rounded value could put a tie on the wrong side.
        step_uncertainty=[
          [float(str(np.float32(x))) for x in m]
          for m, step in zip(b.step_metrics[i, gen_start:end], steps)
          if m[0] == m[0] and step <= last_step
        ],
        answer_step=answer_step,
        error=f"non-finite logits at position {at - gen_start}"
        if (at := int(st.nonfinite_at[i])) >= 0
        else None,
      )
    )
  return out


def loop_stats(state: LoopState) -> LoopStats:
  calls, iterations = fetch((state.counters.teacher_calls, state.counters.iterations))
  return LoopStats(teacher_calls=int(calls), iterations=int(iterations))

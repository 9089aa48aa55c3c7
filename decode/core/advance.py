"""The loop's state transition once a token per row is chosen: pure, testable without a model.

It also owns the step-end rule, which the host uses too (the step ids of a forked prefix), so the
loop and the host can never disagree on where a step ends.
"""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np

from decode.core.state import (
  TEACHER,
  Buffers,
  Counters,
  ForwardsDone,
  LoopInputs,
  LoopState,
  StepState,
  TokenChoice,
)


def step_boundary(has_content, is_content, is_delimiter):
  """The step-end rule: a delimiter token ends a step once the step holds a non-whitespace token.

  Works on jnp arrays (the loop) and numpy bools (the host). Returns (ends [B], has_content after
  this token [B], before any reset at the end of a step).
  """
  content = has_content | is_content
  return is_delimiter & content, content


def prefix_step_ids(prefix, vocab) -> list[int]:
  """1-based step id of each token of a student prefix (fork mode), by the loop's own rule."""
  ids, step, content = [], 1, np.bool_(False)
  for t in prefix:
    ids.append(step)
    ends, content = step_boundary(content, vocab.content[t], vocab.delimiter[t])
    if ends:
      step, content = step + 1, np.bool_(False)
  return ids


def answer_stop(table, state, tok, active):
  """(new stop state [B], answer complete [B]) after each active row's token; without a stop table
  nothing changes and no row is answered (no gather is traced)."""
  if table is None:
    return state, jnp.zeros_like(active)
  new = jnp.where(active, table.step(state, tok), state)
  return new, active & table.accepting[new]


def advance(
  s: LoopState, inp: LoopInputs, max_len: int, choice: TokenChoice, done: ForwardsDone
) -> LoopState:
  """Writes each active row's chosen token, then updates step bookkeeping, limits and counters.

  A row whose logits were not finite (a NaN or inf in a model's weights or activations) writes
  nothing: it stops there, and `nonfinite_at` records the position, so no NaN becomes a token.
  """
  tok, writer, fired = choice.token, choice.writer, choice.fired
  b, st, c = s.buffers, s.step, s.counters
  B = b.length.shape[0]
  rows = jnp.arange(B)
  live = ~st.done
  broken = live & ~choice.finite
  active = live & ~broken  # rows that write a token now
  need = (writer == TEACHER) & active
  pos = jnp.where(active, b.length, max_len)  # inactive rows write nowhere (dropped)
  step = st.steps_done + 1
  buffers = Buffers(
    tokens=b.tokens.at[rows, pos].set(tok, mode="drop"),
    authors=b.authors.at[rows, pos].set(writer, mode="drop"),
    step_ids=b.step_ids.at[rows, pos].set(step, mode="drop"),
    length=b.length + active.astype(jnp.int32),
    step_metrics=b.step_metrics.at[rows, jnp.where(st.at_step_start, pos, max_len)].set(
      choice.step_metrics, mode="drop"
    ),
  )
  is_teacher = need.astype(jnp.int32)
  is_student = (active & ~need).astype(jnp.int32)
  switched = active & (st.last_author >= 0) & (st.last_author != writer)

  step_end, has_content = step_boundary(st.step_has_content, inp.vocab.content[tok], inp.vocab.delimiter[tok])
  step_end &= active
  steps_done = st.steps_done + step_end.astype(jnp.int32)
  lim = inp.limits
  stop_state, answered = answer_stop(inp.vocab.stops, st.stop_state, tok, active)
  stops = (
    answered
    | inp.vocab.eos[tok]
    | (buffers.length - inp.prompts.gen_start >= lim.max_new)
    | (steps_done >= lim.max_steps)
    | (buffers.length >= max_len)
  )
  step_state = StepState(
    done=st.done | broken | (active & stops),
    writer=writer,
    at_step_start=jnp.where(active, step_end, st.at_step_start),
    step_has_content=jnp.where(step_end, False, jnp.where(active, has_content, st.step_has_content)),
    steps_done=steps_done,
    step_teacher_tokens=jnp.where(step_end, 0, st.step_teacher_tokens + is_teacher),
    triggered=st.triggered + (fired & active).astype(jnp.int32),
    last_author=jnp.where(active, writer, st.last_author),
    nonfinite_at=jnp.where(broken, b.length, st.nonfinite_at),
    stop_state=stop_state,
  )
  counters = Counters(
    student_tokens=c.student_tokens + is_student,
    teacher_tokens=c.teacher_tokens + is_teacher,
    teacher_forwarded=done.teacher_forwarded,
    switches=c.switches + switched.astype(jnp.int32),
    teacher_calls=done.teacher_calls,
    iterations=c.iterations + 1,
  )
  return LoopState(buffers=buffers, step=step_state, counters=counters, caches=done.caches)

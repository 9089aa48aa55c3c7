"""decode.core.advance without a model: the step-end rule, limits and counters on hand-built states."""

import jax.numpy as jnp
import numpy as np
import pytest

from decode.core.advance import advance, prefix_step_ids, step_boundary
from decode.core.policy import PolicyArrays, parse_policy
from decode.core.state import (
  PROMPT,
  STUDENT,
  TEACHER,
  Buffers,
  CacheStart,
  CacheState,
  Counters,
  ForwardsDone,
  LoopInputs,
  LoopState,
  Prompts,
  RowLimits,
  SamplingParams,
  StepState,
  TokenChoice,
)
from decode.core.vocab import VocabMasks

# Token ids of a hand-made vocabulary: 0 pad, 1 "a" (content), 2 "\n" (delimiter only),
# 3 "b\n" (content + delimiter), 4 eos, 5 " " (neither).
PAD, A, NL, B_NL, EOS, SPACE = range(6)
VOCAB = VocabMasks(
  delimiter=np.array([0, 0, 1, 1, 0, 0], bool),
  content=np.array([0, 1, 0, 1, 0, 0], bool),
  eos=np.array([0, 0, 0, 0, 1, 0], bool),
)
T = 8


def _inputs(B, max_new=100, max_steps=100):
  z = np.zeros((B,), np.int32)
  return LoopInputs(
    prompts=Prompts(
      tokens=np.zeros((B, T), np.int32),
      lengths=z + 1,
      authors=np.full((B, T), PROMPT, np.int32),
      step_ids=np.zeros((B, T), np.int32),
      start_steps=z,
      gen_start=z + 1,
      stop_state=z,
    ),
    limits=RowLimits(max_new=z + max_new, max_steps=z + max_steps, active=np.ones((B,), bool)),
    sampling=SamplingParams(seeds=z, temperature=z.astype(np.float32), top_k=z, top_p=z + 1.0),
    policy=PolicyArrays.stack([parse_policy("never")] * B),
    vocab=VOCAB,
    cache_start=CacheStart(student_seen=z, teacher_seen=z, teacher_prefill=np.zeros((B,), bool)),
  )


def _state(B, length=1, done=None, has_content=None, last_author=PROMPT):
  z = jnp.zeros((B,), jnp.int32)
  return LoopState(
    buffers=Buffers(
      tokens=jnp.zeros((B, T), jnp.int32),
      authors=jnp.full((B, T), PROMPT, jnp.int32),
      step_ids=jnp.zeros((B, T), jnp.int32),
      length=z + length,
      step_metrics=jnp.full((B, T, 3), jnp.nan),
    ),
    step=StepState(
      done=jnp.zeros((B,), bool) if done is None else jnp.asarray(done),
      writer=z,
      at_step_start=jnp.ones((B,), bool),
      step_has_content=jnp.zeros((B,), bool) if has_content is None else jnp.asarray(has_content),
      steps_done=z,
      step_teacher_tokens=z,
      triggered=z,
      last_author=z + last_author,
      nonfinite_at=z - 1,
      stop_state=z,
    ),
    counters=Counters(
      student_tokens=z,
      teacher_tokens=z,
      teacher_forwarded=z,
      switches=z,
      teacher_calls=jnp.zeros((), jnp.int32),
      iterations=jnp.zeros((), jnp.int32),
    ),
    caches=CacheState(student=None, teacher=None, teacher_seen=z),
  )


def _advance(s, inp, toks, writers, fired=None, finite=None):
  B = len(toks)
  choice = TokenChoice(
    token=jnp.asarray(toks, jnp.int32),
    writer=jnp.asarray(writers, jnp.int32),
    fired=jnp.zeros((B,), bool) if fired is None else jnp.asarray(fired),
    finite=jnp.ones((B,), bool) if finite is None else jnp.asarray(finite),
    step_metrics=jnp.full((B, 3), jnp.nan),
  )
  done = ForwardsDone(s.caches, s.counters.teacher_forwarded, s.counters.teacher_calls)
  return advance(s, inp, T, choice, done)


@pytest.mark.parametrize(
  "has_content,tok,ends,content_after",
  [
    (False, NL, False, False),  # a newline before any content does not end a step
    (True, NL, True, True),  # ... after content it does
    (False, B_NL, True, True),  # a token with content and the delimiter ends the step on its own
    (False, A, False, True),
    (True, SPACE, False, True),
    (False, SPACE, False, False),
  ],
)
def test_step_boundary_table(has_content, tok, ends, content_after):
  got = step_boundary(np.bool_(has_content), VOCAB.content[tok], VOCAB.delimiter[tok])
  assert (bool(got[0]), bool(got[1])) == (ends, content_after)


def test_prefix_step_ids_follow_the_rule():
  #           "\n" a   " "  "\n" a  b\n  a
  prefix = [NL, A, SPACE, NL, A, B_NL, A]
  assert prefix_step_ids(prefix, VOCAB) == [1, 1, 1, 1, 2, 2, 3]


def test_write_and_step_bookkeeping_per_row():
  inp = _inputs(3)
  s = _state(3, has_content=[True, False, False])
  s = _advance(s, inp, [NL, NL, A], [STUDENT, TEACHER, STUDENT])
  np.testing.assert_array_equal(s.buffers.tokens[:, 1], [NL, NL, A])
  np.testing.assert_array_equal(s.buffers.authors[:, 1], [STUDENT, TEACHER, STUDENT])
  np.testing.assert_array_equal(s.buffers.step_ids[:, 1], [1, 1, 1])
  np.testing.assert_array_equal(s.buffers.length, [2, 2, 2])
  np.testing.assert_array_equal(s.step.steps_done, [1, 0, 0])  # only row 0 had content before its newline
  np.testing.assert_array_equal(s.step.at_step_start, [True, False, False])
  np.testing.assert_array_equal(s.step.step_has_content, [False, False, True])
  np.testing.assert_array_equal(s.step.step_teacher_tokens, [0, 1, 0])
  np.testing.assert_array_equal(s.counters.student_tokens, [1, 0, 1])
  np.testing.assert_array_equal(s.counters.teacher_tokens, [0, 1, 0])
  np.testing.assert_array_equal(s.counters.switches, [0, 0, 0])  # the first generated token switches nothing
  assert int(s.counters.iterations) == 1
  # Next token: row 1 switches to the student; row 2's step id is still 1.
  s = _advance(s, inp, [A, A, B_NL], [STUDENT, STUDENT, STUDENT])
  np.testing.assert_array_equal(s.counters.switches, [0, 1, 0])
  np.testing.assert_array_equal(s.buffers.step_ids[:, 2], [2, 1, 1])
  np.testing.assert_array_equal(s.step.steps_done, [1, 0, 1])


def test_limits_stop_rows_and_done_rows_write_nothing():
  inp = _inputs(4, max_new=2, max_steps=1)
  s = _state(4, done=[False, False, False, True])
  s = _advance(s, inp, [EOS, B_NL, A, A], [STUDENT] * 4)
  np.testing.assert_array_equal(s.step.done, [True, True, False, True])  # eos; step limit; running; was done
  np.testing.assert_array_equal(s.buffers.length, [2, 2, 2, 1])
  assert int(s.buffers.tokens[3, 1]) == PAD and int(s.counters.student_tokens[3]) == 0
  s = _advance(s, inp, [A, A, A, A], [STUDENT] * 4)
  np.testing.assert_array_equal(s.step.done, [True, True, True, True])  # row 2 reached max_new = 2
  np.testing.assert_array_equal(s.buffers.length, [2, 2, 3, 1])


def test_buffer_end_stops_a_row_and_triggers_are_counted():
  inp = _inputs(2)
  s = _state(2, length=T - 1)
  s = _advance(s, inp, [A, A], [TEACHER, TEACHER], fired=[True, False])
  np.testing.assert_array_equal(s.step.done, [True, True])  # the buffer is full
  np.testing.assert_array_equal(s.step.triggered, [1, 0])


def test_non_finite_logits_stop_the_row_without_writing():
  inp = _inputs(3)
  s = _advance(_state(3), inp, [A, A, A], [STUDENT] * 3)
  s = _advance(s, inp, [A, B_NL, A], [STUDENT, TEACHER, STUDENT], finite=[True, False, True])
  np.testing.assert_array_equal(s.step.done, [False, True, False])
  np.testing.assert_array_equal(s.step.nonfinite_at, [-1, 2, -1])  # the position it could not write
  np.testing.assert_array_equal(s.buffers.length, [3, 2, 3])
  assert int(s.buffers.tokens[1, 2]) == PAD  # nothing written for the broken row
  np.testing.assert_array_equal(s.counters.teacher_tokens, [0, 0, 0])
  np.testing.assert_array_equal(s.step.steps_done, [0, 0, 0])
  s = _advance(s, inp, [A, A, A], [STUDENT] * 3)  # a stopped row stays stopped
  np.testing.assert_array_equal(s.buffers.length, [4, 2, 4])

"""Plain host-side reference for guided greedy decoding: the oracle for the compiled loop.

No caches, no batching, no policies-as-arrays: every token recomputes the full forward of the
writer on the whole sequence, and the step rule is applied to decoded strings.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

from model.lm import forward

_WIDTH = 128  # fixed width so the reference forward compiles once per model


@functools.lru_cache(maxsize=None)
def _full_forward(cfg):
  @jax.jit
  def run(params, tokens, n):
    z = jnp.zeros((1,), jnp.int32)
    from model.kv_cache import init_cache

    logits, _ = forward(cfg, params, tokens, z, n, init_cache(cfg, 1, _WIDTH))
    return logits[0]

  return run


def full_forward_next_logits(lm, ids: list[int], vocab: int) -> np.ndarray:
  """Full causal forward over the whole sequence from a fresh cache (no reuse of earlier work)."""
  assert len(ids) <= _WIDTH
  tokens = np.zeros((1, _WIDTH), np.int32)
  tokens[0, : len(ids)] = ids
  logits = _full_forward(lm.cfg)(lm.params, jnp.asarray(tokens), jnp.asarray([len(ids)], jnp.int32))
  return np.asarray(logits[len(ids) - 1, :vocab])


def guided_greedy(
  student,
  teacher,
  prompt: list[int],
  *,
  teacher_steps: set[int],
  max_new: int,
  delimiter: str,
  tokenizer,
  hint_tokens: int | None = None,
  eos_id: int | None = None,
  max_steps: int | None = None,
):
  """Teacher writes steps in `teacher_steps` (first `hint_tokens` tokens of each, if set)."""
  vocab = len(tokenizer)
  ids, authors = list(prompt), []
  step, content, in_step_teacher = 1, False, 0
  steps_done = 0
  for _ in range(max_new):
    use_teacher = step in teacher_steps and (hint_tokens is None or in_step_teacher < hint_tokens)
    lm = teacher if use_teacher else student
    tok = int(np.argmax(full_forward_next_logits(lm, ids, vocab)))
    ids.append(tok)
    authors.append(1 if use_teacher else 0)
    in_step_teacher += int(use_teacher)
    text = tokenizer.decode([tok])
    content |= bool(text.strip())
    if delimiter in text and content:
      step, content, in_step_teacher = step + 1, False, 0
      steps_done += 1
    if (eos_id is not None and tok == eos_id) or (max_steps is not None and steps_done >= max_steps):
      break
  return ids[len(prompt) :], authors

"""Brute-force host reference for the text bridge: two models, two tokenizers, token by token.

No loop, no caches, no batching, no servers: each token is a full forward of the writer on the whole
sequence in its own tokens (guided_reference.full_forward_next_logits). The student writes in its
tokens with the loop's step rule; when a step is the teacher's, the text so far is encoded in the
teacher's tokens, the teacher writes token by token until its text holds the delimiter after some
non-whitespace text (or its hint's M tokens), and that text, cut after the delimiter, is encoded in
the student's tokens and appended as the teacher's.
"""

from __future__ import annotations

import numpy as np
from guided_reference import full_forward_next_logits


def _argmax(lm, ids: list[int]) -> int:
  return int(np.argmax(full_forward_next_logits(lm, ids, len(lm.tokenizer))))


def _eos(lm) -> set[int]:
  return {lm.tokenizer.eos_token_id, *lm.eos_token_ids} - {None}


def step_end(text: str, delimiter: str, content: bool) -> int | None:
  """End (exclusive) of the first delimiter in `text` that follows non-whitespace text, if any."""
  at = text.find(delimiter)
  while at >= 0:
    if content or text[:at].strip():
      return at + len(delimiter)
    at = text.find(delimiter, at + 1)
  return None


def bridge_greedy(
  student,
  teacher,
  prompt: str,
  *,
  teacher_steps: set[int],
  max_new: int,
  delimiter: str = "\n",
  hint_tokens: int | None = None,
) -> tuple[list[int], list[int]]:
  """(generated student-token ids, authors) of a greedy guided run."""
  stok, ttok = student.tokenizer, teacher.tokenizer
  special = set(stok.all_special_ids)
  ids = stok(prompt, add_special_tokens=True)["input_ids"]
  start, authors = len(ids), []
  step, content, teacher_in_step = 1, False, 0
  while len(ids) - start < max_new:
    left = max_new - (len(ids) - start)
    if step in teacher_steps and (hint_tokens is None or teacher_in_step < hint_tokens):
      so_far = prompt + stok.decode(ids[start:], skip_special_tokens=True)
      t_ids = ttok(so_far, add_special_tokens=True)["input_ids"]
      limit = left if hint_tokens is None else min(left, hint_tokens - teacher_in_step)
      out, text, cut, eos = [], "", None, False
      while len(out) < limit and cut is None and not eos:
        out.append(_argmax(teacher, t_ids + out))
        eos = out[-1] in _eos(teacher)
        text = ttok.decode(out, skip_special_tokens=True)
        cut = step_end(text, delimiter, content)
      text = text[:cut] if cut is not None else text
      piece = stok(text, add_special_tokens=False)["input_ids"][:left]
      ids += piece
      authors += [1] * len(piece)
      teacher_in_step += len(out)
      content = content or bool(text.strip())
      if eos:
        if len(ids) - start < max_new:
          ids.append(stok.eos_token_id)
          authors.append(1)
        break
      if cut is not None:
        step, content, teacher_in_step = step + 1, False, 0
      continue
    tok = _argmax(student, ids)
    ids.append(tok)
    authors.append(0)
    text = stok.decode([tok])
    is_content = bool(text.strip()) and tok not in special
    if delimiter in text and tok not in special and (content or is_content):
      step, content, teacher_in_step = step + 1, False, 0
    else:
      content = content or is_content
    if tok in _eos(student):
      break
  return ids[start:], authors

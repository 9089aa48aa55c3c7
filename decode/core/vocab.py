"""Host-side vocabulary facts the loop needs: step delimiters, EOS ids, tokenizer compatibility.

Built once per tokenizer; passed into the loop as arrays (so a different delimiter is data).
"""

from __future__ import annotations

import flax.struct
import numpy as np

from decode.core.stop_rule import StopRule
from decode.core.stops import StopTable, build_stop_table
from decode.errors import TokenizerMismatchError, VocabError


@flax.struct.dataclass
class VocabMasks:
  """Per-token facts the loop reads (a pytree: host arrays here, traced inside the loop)."""

  delimiter: np.ndarray  # [V] bool: decoded token text contains the step delimiter
  content: np.ndarray  # [V] bool: decoded token text has a non-whitespace character
  eos: np.ndarray  # [V] bool
  # When a row's answer is complete (decode.core.stops); None: rows run to EOS or a limit, and the
  # loop does no stop work at all (a static choice: the pytree has no leaves there).
  stops: StopTable | None = None

  @property
  def size(self) -> int:
    return int(self.delimiter.shape[0])


def token_texts(tokenizer) -> list[str]:
  """Text of every id on its own (special tokens decode to their literal form)."""
  return [tokenizer.decode([i]) for i in range(len(tokenizer))]


def token_surfaces(tokenizer, alone: list[str] | None = None) -> list[str]:
  """Text of every id as it reads after other text (special tokens in their literal form).

  Decoded after an anchor token, minus the anchor's own text (incremental detokenisation): a piece
  that decodes without its leading space alone (SentencePiece's "\u2581is", a WordPiece decoder's
  joining space) reads " is", as in the row's text. Falls back to the id on its own where the pair
  does not start with the anchor's text. `alone`: token_texts(tokenizer), where the caller has it.
  """
  alone = token_texts(tokenizer) if alone is None else alone
  special = set(getattr(tokenizer, "all_special_ids", []))
  anchor = next((i for i, t in enumerate(alone) if t.strip() and t == t.strip() and i not in special), None)
  if anchor is None:
    return alone
  head = alone[anchor]
  pairs = tokenizer.batch_decode([[anchor, i] for i in range(len(alone))], skip_special_tokens=False)
  return [p[len(head) :] if p.startswith(head) else t for p, t in zip(pairs, alone)]


def eos_ids(tokenizer, extra: tuple[int, ...] = ()) -> set[int]:
  ids = set(extra)
  if tokenizer.eos_token_id is not None:
    ids.add(int(tokenizer.eos_token_id))
  return ids


def build_masks(
  tokenizer, delimiter: str = "\n", extra_eos: tuple[int, ...] = (), stop: StopRule | None = None
) -> VocabMasks:
  if not delimiter:
    raise VocabError("the step delimiter must be a non-empty string (default: a newline)")
  texts = token_texts(tokenizer)
  special = set(getattr(tokenizer, "all_special_ids", []))
  delim = np.array([delimiter in t and i not in special for i, t in enumerate(texts)], bool)
  content = np.array([bool(t.strip()) and i not in special for i, t in enumerate(texts)], bool)
  eos = np.zeros(len(texts), bool)
  for i in eos_ids(tokenizer, extra_eos):
    if 0 <= i < len(texts):  # -1 means "none" in some configs; never wrap to the last token
      eos[i] = True
  stops = None if stop is None or stop.empty else build_stop_table(stop, token_surfaces(tokenizer, texts))
  return VocabMasks(delimiter=delim, content=content, eos=eos, stops=stops)


def require_steps(masks: VocabMasks, delimiter: str) -> None:
  """Steps need a token that can end one; checked only where a policy or a step limit uses steps."""
  if not np.any(masks.delimiter):
    raise VocabError(
      f"no token of the tokenizer contains the step delimiter {delimiter!r}, so no step can end; choose "
      "another --step-delimiter (student-only runs with --policy never and no --max-steps need none)"
    )


def tokenizer_mismatch(student_tok, teacher_tok) -> str | None:
  """Why two tokenizers cannot share the loop (other ids, another EOS), or None: they can."""
  sv, tv = student_tok.get_vocab(), teacher_tok.get_vocab()
  if sv != tv:
    only_s = len(set(sv.items()) - set(tv.items()))
    only_t = len(set(tv.items()) - set(sv.items()))
    return (
      f"student and teacher tokenizers differ ({len(sv)} vs {len(tv)} tokens; {only_s} entries only in the "
      f"student's, {only_t} only in the teacher's). Guided decoding needs one shared tokenizer: pick a "
      "teacher/student pair from the same model family."
    )
  if student_tok.eos_token_id != teacher_tok.eos_token_id:
    return f"student EOS id {student_tok.eos_token_id} != teacher EOS id {teacher_tok.eos_token_id}"
  return None


def check_same_tokenizer(student_tok, teacher_tok, student_vocab_rows: int, teacher_vocab_rows: int) -> int:
  """Returns the shared vocabulary size; padded embedding rows may differ, ids may not."""
  why = tokenizer_mismatch(student_tok, teacher_tok)
  if why is not None:
    raise TokenizerMismatchError(why)
  size = len(student_tok.get_vocab())
  for who, rows in (("student", student_vocab_rows), ("teacher", teacher_vocab_rows)):
    if rows < size:
      raise TokenizerMismatchError(
        f"the {who}'s embedding has {rows} rows but the tokenizer has {size} tokens"
      )
  return size

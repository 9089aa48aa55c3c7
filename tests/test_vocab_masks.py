"""decode.core.vocab: delimiter / content / EOS masks and the shared-tokenizer check, on hand-made tokenizers."""

from __future__ import annotations

import numpy as np
import pytest

from decode.core.vocab import build_masks, check_same_tokenizer, require_steps
from decode.errors import TokenizerMismatchError, VocabError

# id: token text (a WordLevel vocabulary: every entry decodes to exactly its own text)
TOKENS = [
  "<pad>",  # 0 special
  "<eos>",  # 1 special (EOS)
  "<unk>",  # 2 special
  "hello",  # 3
  "a\n",  # 4 text and a newline
  "\n",  # 5 a pure newline
  "\n\n",  # 6 two newlines
  " ",  # 7 whitespace only
  "  ",  # 8
  "x.",  # 9 text and a full stop
  ".",  # 10
  "eos!",  # 11 contains "eos", like the special "<eos>"
  "b",  # 12
  "\t",  # 13
  "<s.\n>",  # 14 an additional special token containing both "." and "\n"
]
SPECIAL_IDS = {0, 1, 2, 14}


def make_tokenizer(tokens=TOKENS, eos: str | None = "<eos>", extra_special=("<s.\n>",)):
  from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers
  from transformers import PreTrainedTokenizerFast

  vocab = {t: i for i, t in enumerate(tokens)}
  tok = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
  tok.pre_tokenizer = pre_tokenizers.Split(Regex(r"\s+|[^\s]+"), behavior="isolated")
  tok.decoder = decoders.Fuse()
  kwargs = dict(pad_token="<pad>", unk_token="<unk>", additional_special_tokens=list(extra_special))
  if eos is not None:
    kwargs["eos_token"] = eos
  return PreTrainedTokenizerFast(tokenizer_object=tok, **kwargs)


@pytest.fixture(scope="module")
def tok():
  t = make_tokenizer()
  # The premises the expectations below rest on: ids, texts and special ids are as listed.
  assert len(t) == len(TOKENS)
  assert [t.decode([i]) for i in range(len(t))] == TOKENS
  assert set(t.all_special_ids) == SPECIAL_IDS
  assert t.eos_token_id == 1
  return t


def ids(mask) -> set[int]:
  assert isinstance(mask, np.ndarray) and mask.dtype == bool and mask.shape == (len(TOKENS),)
  return set(np.flatnonzero(mask).tolist())


def test_newline_delimiter_masks(tok):
  m = build_masks(tok)  # default delimiter "\n"
  assert m.size == len(TOKENS)
  assert ids(m.delimiter) == {4, 5, 6}  # not the special "<s.\n>"
  # Content: any non-whitespace character; never a special token, never whitespace-only tokens.
  assert ids(m.content) == {3, 4, 9, 10, 11, 12}
  assert ids(m.eos) == {1}


def test_custom_delimiters(tok):
  assert ids(build_masks(tok, ".").delimiter) == {9, 10}
  assert ids(build_masks(tok, "\n\n").delimiter) == {6}
  # "eos" is inside the special "<eos>" too, which never counts.
  assert ids(build_masks(tok, "eos").delimiter) == {11}
  assert ids(build_masks(tok, "l").delimiter) == {3}
  # The content and EOS masks do not depend on the delimiter.
  for d in (".", "\n\n", "eos"):
    m = build_masks(tok, d)
    assert ids(m.content) == {3, 4, 9, 10, 11, 12} and ids(m.eos) == {1}


def test_extra_eos_ids(tok):
  assert ids(build_masks(tok, extra_eos=(5, 12)).eos) == {1, 5, 12}
  assert ids(build_masks(tok, extra_eos=(1,)).eos) == {1}
  # Ids past the tokenizer (e.g. padded embedding rows of a model config) are ignored.
  assert ids(build_masks(tok, extra_eos=(3, len(TOKENS), len(TOKENS) + 50)).eos) == {1, 3}
  # EOS-ness does not change the delimiter / content masks.
  m = build_masks(tok, extra_eos=(5, 12))
  assert ids(m.delimiter) == {4, 5, 6} and ids(m.content) == {3, 4, 9, 10, 11, 12}


def test_negative_extra_eos_id_does_not_mark_the_last_token(tok):
  try:
    m = build_masks(tok, extra_eos=(-1,))
  except (VocabError, ValueError):
    return  # rejecting the id is as good as ignoring it
  assert ids(m.eos) == {1}


def test_tokenizer_without_eos_token():
  t = make_tokenizer(eos=None)
  assert t.eos_token_id is None
  assert ids(build_masks(t).eos) == set()
  assert ids(build_masks(t, extra_eos=(12,)).eos) == {12}
  # "<eos>" is now an ordinary token: it has content and counts as a delimiter for "eos".
  assert 1 in ids(build_masks(t).content)
  assert ids(build_masks(t, "eos").delimiter) == {1, 11}


def test_empty_delimiter_is_an_error(tok):
  with pytest.raises(VocabError, match="non-empty"):
    build_masks(tok, "")


@pytest.mark.parametrize("delimiter", ["\r", "§", "hello world", "<", "<pad>"])
def test_unexpressible_delimiter_is_an_error_only_where_steps_are_needed(tok, delimiter):
  # "<" and "<pad>" occur only in special tokens, which never count as delimiters.
  masks = build_masks(tok, delimiter)
  assert not masks.delimiter.any()
  with pytest.raises(VocabError, match="no step can end"):
    require_steps(masks, delimiter)
  require_steps(build_masks(tok, "\n"), "\n")  # a delimiter the tokenizer has: fine


def test_same_tokenizer_returns_the_size(tok):
  other = make_tokenizer()
  V = len(TOKENS)
  assert check_same_tokenizer(tok, other, V, V) == V
  assert check_same_tokenizer(tok, other, V + 6, V + 100) == V  # padded embeddings are fine
  assert check_same_tokenizer(tok, tok, V, V) == V


def test_different_vocabularies_are_a_mismatch(tok):
  V = len(TOKENS)
  bigger = make_tokenizer(TOKENS + ["c"])
  with pytest.raises(TokenizerMismatchError, match="differ"):
    check_same_tokenizer(tok, bigger, V + 8, V + 8)
  with pytest.raises(TokenizerMismatchError, match="differ"):
    check_same_tokenizer(bigger, tok, V + 8, V + 8)
  # The same strings under other ids are a different tokenizer.
  swapped = list(TOKENS)
  swapped[3], swapped[12] = swapped[12], swapped[3]
  with pytest.raises(TokenizerMismatchError, match="differ"):
    check_same_tokenizer(tok, make_tokenizer(swapped), V, V)
  renamed = list(TOKENS)
  renamed[12] = "c"
  with pytest.raises(TokenizerMismatchError, match="differ"):
    check_same_tokenizer(tok, make_tokenizer(renamed), V, V)


def test_different_eos_is_a_mismatch(tok):
  V = len(TOKENS)
  with pytest.raises(TokenizerMismatchError, match="EOS"):
    check_same_tokenizer(tok, make_tokenizer(eos="<pad>"), V, V)
  with pytest.raises(TokenizerMismatchError, match="EOS"):
    check_same_tokenizer(make_tokenizer(eos=None), tok, V, V)


@pytest.mark.parametrize(
  "student_rows,teacher_rows,who",
  [
    (len(TOKENS) - 1, len(TOKENS), "student"),
    (len(TOKENS), len(TOKENS) - 1, "teacher"),
    (len(TOKENS) + 4, 3, "teacher"),
  ],
)
def test_too_few_embedding_rows_is_a_mismatch(tok, student_rows, teacher_rows, who):
  with pytest.raises(TokenizerMismatchError, match=who):
    check_same_tokenizer(tok, make_tokenizer(), student_rows, teacher_rows)

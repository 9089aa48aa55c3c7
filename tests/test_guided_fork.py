"""Fork mode in the guided loop: continuing from the student's own prefix, and from caches prefilled
once (fully or in part), equals the plain run; caches refuse rows they do not hold."""

import pytest
from guided_cases import MAX_NEW, PROMPTS, student_runs

from decode.api import DecodeRequest
from decode.errors import DecodeInputError
from decode.host.guided import GuidedDecoder


def test_fork_from_student_prefix_equals_plain_run(decoder):
  """Continuing from the student's own first K-1 steps gives the plain step:K result."""
  ids = decoder.encode(PROMPTS)
  base = decoder.generate(DecodeRequest(ids, "never", max_new_tokens=MAX_NEW))
  k = 2
  for p, b in zip(ids, base):
    if b.num_steps < k:
      continue
    cut = b.step_ids.index(k)
    fork = decoder.generate(
      DecodeRequest([p], "step:2", max_new_tokens=MAX_NEW, prefixes=[b.token_ids[:cut]], prefix_steps=[k - 1])
    )[0]
    plain = decoder.generate(DecodeRequest([p], "step:2", max_new_tokens=MAX_NEW))[0]
    assert (fork.token_ids, fork.authors, fork.step_ids) == (plain.token_ids, plain.authors, plain.step_ids)
    assert (fork.student_tokens, fork.teacher_tokens, fork.switches) == (
      plain.student_tokens,
      plain.teacher_tokens,
      plain.switches,
    )


def test_prefilled_caches_equal_a_plain_run(pair, delimiter):
  """prefill once, then each timing from the cached rows == the plain run; the cached prefix is not re-read."""
  g, ids, kw, base = student_runs(pair, delimiter)
  compiles = g.compiles
  caches = g.prefill(ids, [r.token_ids for r in base], max_len=64, batch_size=4)
  checked = 0
  for k in (1, 2, 3):
    rows = [i for i, r in enumerate(base) if k in r.step_ids][::-1]  # reversed: cache rows are gathered
    if not rows:
      continue
    prompts = [ids[i] for i in rows]
    prefixes = [base[i].token_ids[: base[i].step_ids.index(k)] for i in rows]
    plain = g.generate(DecodeRequest(prompts, f"step:{k}", **kw))
    cached = g.generate(
      DecodeRequest(
        prompts,
        f"step:{k}",
        prefixes=prefixes,
        prefix_steps=[k - 1] * len(rows),
        caches=caches.rows(rows, 4),
        **kw,
      )
    )
    for a, b in zip(plain, cached):
      assert (a.token_ids, a.authors, a.step_ids) == (b.token_ids, b.authors, b.step_ids), k
      assert b.teacher_prefilled == b.teacher_tokens < a.teacher_prefilled  # only its own step's positions
      checked += 1
  assert checked >= 3
  # prefill and cached calls run the same compiled program, with the same input layouts (a second
  # executable for other layouts would count as a compile too)
  assert g.compiles == compiles
  # Each call consumes (donates) its rows; the prefill's caches stay usable for any number of calls.
  plain0 = g.generate(DecodeRequest([ids[0]], "step:1", **kw))[0].token_ids
  rows0 = caches.rows([0], 4)
  assert g.generate(DecodeRequest([ids[0]], "step:1", caches=rows0, **kw))[0].token_ids == plain0
  with pytest.raises(DecodeInputError, match="consumed"):
    g.generate(DecodeRequest([ids[0]], "step:1", caches=rows0, **kw))
  assert (
    g.generate(DecodeRequest(ids[:3], "step:1", caches=caches, **kw))[0].token_ids == plain0
  )  # copied, not consumed
  assert (
    g.generate(DecodeRequest([ids[0]], "step:1", caches=caches.rows([0], 4), **kw))[0].token_ids == plain0
  )


def test_caches_holding_part_of_the_prefix(pair, delimiter):
  """Caches prefilled on a shorter prefix: the call prefills only the rest, from where they stop."""
  g, ids, kw, base = student_runs(pair, delimiter)
  caches = g.prefill(ids, [r.token_ids[:2] for r in base], max_len=64, batch_size=4)
  prefixes = [r.token_ids[:7] for r in base]
  want = g.generate(DecodeRequest(ids, "always", prefixes=prefixes, **kw))
  got = g.generate(DecodeRequest(ids, "always", prefixes=prefixes, caches=caches.rows([0, 1, 2], 4), **kw))
  for a, b, p, q in zip(want, got, ids, prefixes):
    assert (a.token_ids, a.authors) == (b.token_ids, b.authors)
    assert (
      a.teacher_prefilled - b.teacher_prefilled == len(p) + 1
    )  # the cached prompt + 2 tokens, less the last
  other = GuidedDecoder(*pair, step_delimiter=delimiter)
  with pytest.raises(DecodeInputError, match="another GuidedDecoder"):
    other.generate(DecodeRequest(ids, "always", prefixes=prefixes, caches=caches.rows([0, 1, 2], 4), **kw))


def test_prefilled_caches_reject_other_rows(pair, delimiter):
  s, t = pair
  g = GuidedDecoder(s, t, step_delimiter=delimiter)
  ids = g.encode(PROMPTS)
  caches = g.prefill(ids, [[], [], []], max_len=64, batch_size=4)
  with pytest.raises(DecodeInputError, match="other tokens than its prompt"):
    g.generate(
      DecodeRequest(
        [ids[1]], "step:1", max_new_tokens=8, max_len=64, batch_size=4, caches=caches.rows([0], 4)
      )
    )
  with pytest.raises(DecodeInputError, match="needs 2 x 64"):
    g.generate(
      DecodeRequest(
        [ids[0]], "step:1", max_new_tokens=8, max_len=64, batch_size=2, caches=caches.rows([0], 4)
      )
    )
  with pytest.raises(DecodeInputError, match="out of range"):
    caches.rows([5], 4)

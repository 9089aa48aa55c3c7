"""The prompts, lengths and host-side reference runs shared by the guided loop tests
(test_guided_loop, test_guided_sub_batches, test_guided_fork, test_guided_errors); the
`delimiter` and `decoder` fixtures (conftest.py) are built here."""

import guided_reference as ref

from decode.api import DecodeRequest
from decode.host.guided import GuidedDecoder

PROMPTS = ["what is 3+4?", "ab", "hello there. x"]
MAX_NEW = 24


def busiest_delimiter(pair):
  """The content character that splits these random models' outputs into the most steps."""
  s, t = pair
  g = GuidedDecoder(s, t)
  ids = g.encode(PROMPTS)
  texts = [
    r.completion
    for p in ("never", "always")
    for r in g.generate(DecodeRequest(ids, p, max_new_tokens=MAX_NEW))
  ]
  counts = {c: sum(t.count(c) for t in texts) for c in "abcdefghijklmnopqrstuvwxyz0123456789$#?=+-*<>,."}
  return max(sorted(counts), key=counts.get)


def chunked_decoder(pair, delimiter):
  s, t = pair
  return GuidedDecoder(s, t, step_delimiter=delimiter, teacher_chunk=4, prefill_chunk=5)


def reference(pair, decoder, delimiter, prompt_ids, **kw):
  s, t = pair
  return ref.guided_greedy(
    s,
    t,
    prompt_ids,
    max_new=MAX_NEW,
    delimiter=delimiter,
    tokenizer=s.tokenizer,
    eos_id=s.tokenizer.eos_token_id,
    **kw,
  )


def student_runs(pair, delimiter):
  """A fresh decoder, the prompts' ids, fixed shapes, and the student's own runs (fork mode's base)."""
  s, t = pair
  g = GuidedDecoder(s, t, step_delimiter=delimiter, teacher_chunk=4, prefill_chunk=5)
  ids = g.encode(PROMPTS)
  kw = dict(max_new_tokens=MAX_NEW, max_len=64, batch_size=4)
  return g, ids, kw, g.generate(DecodeRequest(ids, "never", **kw))

"""A teacher as the text bridge sees it: prompt text in, completion text out (OpenAI semantics).

Both kinds of teacher answer `complete(requests) -> completions`, one per request, batched:

- `LocalTeacher`: a Flax model of this codebase, decoded alone through the compiled loop
  (GuidedDecoder with no teacher, policy never) on the prompt encoded in its own tokenizer; a
  request that carries a row's cache (`CompletionRequest.cache`, the bridge's) starts from it and
  reads only the tokens it does not hold (`Completion.cached_tokens`), then keeps the new one;
- `decode.serving.client.ServedTeacher`: an OpenAI-compatible completions server (vLLM, SGLang,
  `python -m decode.serve`, which answers with a LocalTeacher).

The semantics are the completions API's, so both kinds are interchangeable: the text stops before
the first occurrence of a stop string (which is cut off, `finish_reason` "stop", `stop_reason` the
string), at the model's EOS ("stop", `stop_reason` None), or after max_tokens ("length").
"""

from __future__ import annotations

import dataclasses
from typing import Protocol, Sequence

import numpy as np

from decode.api import DecodeRequest, Sampling
from decode.bridge.row_caches import CachedRow, RowCache, starting_rows
from decode.errors import DecodeInputError
from decode.host.guided import GuidedDecoder
from decode.host.options import DecodeOptions
from model.lm import LanguageModel


@dataclasses.dataclass(frozen=True)
class CompletionRequest:
  prompt: str
  max_tokens: int
  stop: tuple[str, ...] = ()
  temperature: float = 0.0
  top_k: int = 0
  top_p: float = 1.0
  seed: int = 0
  # Where the student's solution so far begins in `prompt` (the bridge sets it): a chat teacher puts
  # the problem and the solution into its template's two places; a completions teacher reads `prompt`.
  solution_start: int | None = None
  # The row's cache between its teacher calls, for a teacher that keeps one (LocalTeacher; a server
  # does not: it is never sent). Not part of the request's value.
  cache: RowCache | None = dataclasses.field(default=None, compare=False, repr=False)


@dataclasses.dataclass(frozen=True)
class Completion:
  text: str  # stop string cut off
  finish_reason: str  # "stop" (a stop string or EOS) | "length"
  stop_reason: str | None  # the stop string that ended it; None at EOS or length
  prompt_tokens: int  # teacher tokens read
  completion_tokens: int  # teacher tokens written (up to the one holding the stop string)
  error: str | None = None  # the teacher's logits were not finite
  cached_tokens: int = 0  # of prompt_tokens, those a cache held: not read again (OpenAI's usage name)

  @property
  def at_eos(self) -> bool:
    return self.finish_reason == "stop" and self.stop_reason is None


class TextTeacher(Protocol):
  """A teacher as the bridge sees it: `complete` answers each request (one batched call),
  `request_text` is the exact text a request sends (rows record its hash, so a study can be
  audited), and `compiles` counts the loop compilations it caused here (0 for a server)."""

  @property
  def compiles(self) -> int: ...

  def request_text(self, request: CompletionRequest) -> str: ...

  def complete(self, requests: Sequence[CompletionRequest]) -> list[Completion]: ...


def cut_at_stop(tokenizer, ids: list[int], stops: Sequence[str]) -> tuple[str, str | None, int]:
  """(text before the first stop string, that string or None, tokens up to the one completing it)."""
  text = tokenizer.decode(ids, skip_special_tokens=True)
  hits = [(text.find(s), s) for s in stops if s and s in text]
  if not hits:
    return text, None, len(ids)
  at, stop = min(hits)
  # The fewest tokens whose text holds the stop string: a prefix's text only grows with more tokens,
  # so holding it is monotone and a bisection decodes O(log n) prefixes, not every one.
  holds = lambda j: stop in tokenizer.decode(ids[:j], skip_special_tokens=True)
  lo, hi = 1, len(ids)
  while lo < hi:
    mid = (lo + hi) // 2
    lo, hi = (lo, mid) if holds(mid) else (mid + 1, hi)
  return text[:at], stop, lo


class LocalTeacher:
  """An in-process teacher: completions from the compiled loop, one decoder per stop string.

  The loop stops a row at the end of its first step when the stop string fits in one token (its
  step delimiter, max_steps=1); otherwise it runs to max_tokens. Either way the text is cut at the
  first stop string, so the result is the completions API's. A request that carries a row's cache
  (the bridge's) starts from the cache of that row's last call and reads only what it does not hold.
  """

  def __init__(
    self,
    model: LanguageModel,
    options: DecodeOptions | None = None,
    *,
    batch_size: int | None = None,
    mesh=None,
    rules=(),
    keep_caches: bool = True,
  ):
    if model.tokenizer is None:
      raise DecodeInputError("the teacher needs a tokenizer (load it with with_tokenizer=True)")
    self.model, self.name = model, model.name
    self.options = options or DecodeOptions()
    self.batch_size = batch_size  # fixed rows per call (one compiled shape); None: next power of two
    self.mesh, self.rules = mesh, tuple(rules)
    # False: requests' row caches are ignored, every call reads its whole prompt (as a server without
    # a prefix cache does; the bench's "before")
    self.keep_caches = keep_caches
    self._decoders: dict[str, GuidedDecoder] = {}

  @property
  def compiles(self) -> int:
    return sum(d.compiles for d in self._decoders.values())

  def decoder(self, stop: str | None) -> GuidedDecoder:
    key = stop or self.options.step_delimiter
    if key not in self._decoders:
      self._decoders[key] = GuidedDecoder(
        self.model, None, self.options, mesh=self.mesh, student_rules=self.rules, step_delimiter=key
      )
    return self._decoders[key]

  def request_text(self, request: CompletionRequest) -> str:
    return request.prompt

  def encode(self, prompt: str) -> list[int]:
    """The prompt in the teacher's tokens; a prompt that fills its context is an error."""
    ids = self.model.tokenizer(prompt, add_special_tokens=True)["input_ids"]
    context = self.model.cfg.max_position_embeddings
    if not ids or len(ids) >= context:
      raise DecodeInputError(
        f"the teacher's prompt is {len(ids)} tokens, and its context holds {context}: nothing can be "
        "written; shorten the prompt or lower max_new_tokens"
      )
    return ids

  def prefill(self, prompts: Sequence[str], stop: str) -> list[RowCache]:
    """Each prompt's cache, made as `complete` with this stop string would start from it (one
    loop call writing one token): fork mode reads a problem's text once for all its timings."""
    dec = self.decoder(stop)
    ids = [self.encode(p) for p in prompts]
    n = len(ids)
    T = max(dec.buffer_length(len(p), 1) for p in ids)
    _, final = dec.generate_keeping_caches(
      DecodeRequest(
        ids, "never", 1, max_len=T, batch_size=max(n, self.batch_size or 1 << (n - 1).bit_length())
      )
    )
    out = [RowCache() for _ in ids]
    for j, row in enumerate(out):
      row.keep(CachedRow(final, j), dec)
    return out

  def complete(self, requests: Sequence[CompletionRequest]) -> list[Completion]:
    """One loop call per stop string among the requests (usually one: the step delimiter)."""
    out: list[Completion | None] = [None] * len(requests)
    groups: dict[tuple[str, ...], list[int]] = {}
    for i, r in enumerate(requests):
      groups.setdefault(tuple(r.stop), []).append(i)
    for stops, idx in groups.items():
      for i, c in zip(idx, self._complete_group([requests[i] for i in idx], stops)):
        out[i] = c
    return out

  def _complete_group(self, reqs: list[CompletionRequest], stops: tuple[str, ...]) -> list[Completion]:
    dec = self.decoder(stops[0] if stops else None)
    ids = [self.encode(r.prompt) for r in reqs]
    context = self.model.cfg.max_position_embeddings
    budget = [min(r.max_tokens, context - len(p)) for r, p in zip(reqs, ids)]
    one_step = bool(stops) and bool(np.any(dec.masks.delimiter))  # the stop fits in one token
    n = len(reqs)
    B = max(n, self.batch_size or 1 << (n - 1).bit_length())
    T = max(dec.buffer_length(len(p), m) for p, m in zip(ids, budget))  # generate's own T for these rows
    sampling = Sampling.of_rows([Sampling(r.temperature, r.top_k, r.top_p, r.seed) for r in reqs])
    rows = [r.cache if self.keep_caches else None for r in reqs]
    held = [c.held if c is not None and c.maker is dec else None for c in rows]
    caches, cached = starting_rows(held, ids, B, T)
    res, final = dec.generate_keeping_caches(
      DecodeRequest(
        ids,
        "never",
        budget,
        sampling=sampling,
        max_steps=1 if one_step else None,
        max_len=T,
        batch_size=B,
        caches=caches,
      )
    )
    out = []
    for j, (p, r, row, c) in enumerate(zip(ids, res, rows, cached)):
      if row is not None:
        row.keep(CachedRow(final, j), dec)
      text, stop, used = cut_at_stop(self.model.tokenizer, r.token_ids, stops)
      eos = stop is None and bool(r.token_ids) and bool(dec.masks.eos[r.token_ids[-1]])
      finish = "stop" if stop is not None or eos else "length"
      out.append(Completion(text, finish, stop, len(p), used, r.error, cached_tokens=c))
    return out

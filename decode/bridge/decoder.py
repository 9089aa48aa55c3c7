"""The text bridge: a teacher with another tokenizer writes steps of the student's chain of thought.

    decoder = BridgeDecoder(student, LocalTeacher(teacher))            # or ServedTeacher(url)
    rows = decoder.generate(DecodeRequest(prompt_ids, "step:1", 128, texts=prompt_texts))

Ids of two tokenizers cannot share a loop, but text can cross at step boundaries. Rows go in rounds:

1. teacher: every row whose coming step is the teacher's (its window, a trigger, a hint) goes to
   the teacher together, in one call: the prompt text + the completion so far, which the teacher
   reads in its own tokens, and it writes until its step delimiter (the completions API's `stop`),
   or M of its tokens for a hint. Its text is encoded in the student's tokens and appended,
   authored by the teacher.
2. student: every other live row continues from its own tokens in the compiled loop (policy never,
   `generate(prefixes=...)`) until the step before its next teacher step (per-row max_steps), its
   budget, EOS or max_steps.

Host round trips happen only at these boundaries; between them the student decodes in the loop.
A boundary costs: one teacher request per row that needs it (sent together); the teacher reading
what its cache of the row does not hold (`teacher_read`: an in-process teacher keeps each row's
cache between boundaries and reads only the new text; a served one reads prompt + text so far,
unless the server keeps a prefix cache); and the student reading the teacher's text in its next
loop call, which starts from the row's cache of its previous call (row_caches.py).

Fork mode (`prefill`, then `generate` with `request.caches`): a sweep's "teacher from step K" row
starts from the student's own base run cut before step K. Both models' caches of each problem's
prompt + base run are made once (an in-process teacher's of the same text in its tokens), and every
timing's row starts from them, as in the one loop: its first teacher call reads only the text past
the prefill's, its first student call only the teacher's text. Rows equal plain mode's but for what
the teacher read (`teacher_read`, `teacher_prefilled`: less, as in the one loop's fork rows).

Triggers are decided on the student's side, by the policy's one rule (`PolicyRule`): the student
decoder runs the student alone on policy never, whose rows record its (entropy, max prob, margin)
at every step start; a trigger that fires at a step start cuts the student's tokens there and hands
that step over.
"""

from __future__ import annotations

import dataclasses
import hashlib
from typing import Sequence

import numpy as np

from decode.api import DecodeRequest, Sampling
from decode.bridge.row_caches import CachedRow, ForkCaches, RowCache, starting_rows
from decode.bridge.rows import BridgeResult, BridgeRow, append_student, kept_tokens
from decode.bridge.teachers import Completion, CompletionRequest, LocalTeacher, TextTeacher
from decode.core.advance import prefix_step_ids
from decode.core.policy import NO_LIMIT, PolicyArrays
from decode.core.sampling import policy_uniform, row_keys
from decode.core.state import STUDENT, TEACHER
from decode.errors import DecodeInputError
from decode.host.batching import check_positive_int, resolve_policies
from decode.host.guided import GuidedDecoder
from decode.host.options import DecodeOptions
from decode.host.prefix_caches import PrefixCaches, SharedPrefix
from model.lm import LanguageModel


class BridgeDecoder:
  """A student in the compiled loop and a teacher behind `complete(requests)`, joined by text (a
  `Decoder`; fork mode forks the student's caches, the teacher reads text)."""

  can_fork = True

  def __init__(
    self,
    student: LanguageModel,
    teacher: TextTeacher,
    options: DecodeOptions | None = None,
    *,
    mesh=None,
    student_rules=(),
    **overrides,
  ):
    opts = dataclasses.replace(options or DecodeOptions(), **overrides)
    # The student alone: its policy-never rows record its step-start uncertainty (triggers).
    self.student_decoder = GuidedDecoder(student, None, opts, mesh=mesh, student_rules=student_rules)
    self.student, self.teacher, self.options = student, teacher, opts
    self.tokenizer = student.tokenizer
    self.masks = self.student_decoder.masks
    self.last_stats = None

  @property
  def compiles(self) -> int:
    return self.student_decoder.compiles + self.teacher.compiles

  def encode(self, texts: Sequence[str]) -> list[list[int]]:
    return self.student_decoder.encode(texts)

  def max_context(self) -> int:
    return self.student.cfg.max_position_embeddings

  def buffer_length(self, longest_prompt: int, max_new_tokens: int) -> int:
    return self.student_decoder.buffer_length(longest_prompt, max_new_tokens)

  def check_steps(self, policies, max_steps: int | None = None) -> None:
    self.student_decoder.check_steps(policies, max_steps)

  def shared_prefix(self, prompts: Sequence[Sequence[int]], *, max_len: int) -> SharedPrefix | None:
    return self.student_decoder.shared_prefix(prompts, max_len=max_len)

  def prefill(self, prompts, prefixes, *, max_len, batch_size=None, shared_prefix=None) -> ForkCaches:
    """Fork mode: the student's caches of each row's prompt + prefix, and for an in-process teacher
    a holder per row of its cache of the same text, made from the row's prompt text by the first
    forked row that needs it (`_teacher_from_prefill`). A served teacher keeps none: a forked row's
    teacher reads its text at its first boundary, as in plain mode."""
    student = self.student_decoder.prefill(
      prompts, prefixes, max_len=max_len, batch_size=batch_size, shared_prefix=shared_prefix
    )
    keeps = isinstance(self.teacher, LocalTeacher) and self.teacher.keep_caches
    fields = {f.name: getattr(student, f.name) for f in dataclasses.fields(PrefixCaches)}
    return ForkCaches(**fields, teacher_rows=[RowCache() for _ in prompts] if keeps else [])

  def generate(self, request: DecodeRequest) -> list[BridgeResult]:
    """`Decoder.generate`, in rounds (see the module docstring).

    request.texts: the prompts as text, for the teacher (default: the student's decoding of its ids).
    request.max_len / batch_size: the student's loop shape, one for every round.
    request.caches: rows of this decoder's `prefill` (fork mode), one per prompt: the student's
      first call starts from them (same max_len and batch_size as the prefill).
    """
    prompts, max_new_tokens, max_steps = request.prompts, request.max_new_tokens, request.max_steps
    n = len(prompts)
    if n == 0:
      return []
    if request.caches is not None and len(request.caches.tokens) != n:
      raise DecodeInputError(f"caches hold {len(request.caches.tokens)} rows for {n} prompts")
    check_positive_int("max_new_tokens", max_new_tokens)
    if max_steps is not None:
      check_positive_int("max_steps", max_steps)
    pols = resolve_policies(request.policies, n, has_teacher=True)
    PolicyArrays.stack(pols)  # uncalibrated `q=` triggers are refused here, as by the loop
    self.check_steps(pols, max_steps)
    texts = request.texts
    texts = (
      list(texts)
      if texts is not None
      else [self.tokenizer.decode(p, skip_special_tokens=True) for p in prompts]
    )
    prefixes = [list(q) for q in request.prefixes] if request.prefixes is not None else [[] for _ in range(n)]
    prefix_steps = list(request.prefix_steps) if request.prefix_steps is not None else [0] * n
    if not len(texts) == len(prefixes) == len(prefix_steps) == n:
      raise DecodeInputError(
        f"{len(texts)} texts / {len(prefixes)} prefixes / {len(prefix_steps)} prefix_steps for {n} prompts"
      )
    rows = [
      BridgeRow(
        list(p),
        t,
        pol,
        request.sampling.row(i),
        list(q),
        [STUDENT] * len(q),
        prefix_step_ids(q, self.masks),
        k,
      )
      for i, (p, t, pol, q, k) in enumerate(zip(prompts, texts, pols, prefixes, prefix_steps))
    ]
    for i, r in enumerate(rows):
      if request.caches is not None:
        r.student_cache.keep(CachedRow(request.caches, i), self.student_decoder)
      self._check_done(r, max_new_tokens, max_steps, None)
    shape = dict(
      max_len=request.max_len or self.buffer_length(max(map(len, prompts)), max_new_tokens),
      batch_size=request.batch_size or n,
      shared_prefix=request.shared_prefix,
    )
    if isinstance(request.caches, ForkCaches) and request.caches.teacher_rows:
      self._teacher_from_prefill(rows, request.caches)
    for _ in range(4 * max_new_tokens + 8):  # each round moves every live row on (a guard, not a limit)
      live = [r for r in rows if not r.done]
      if not live:
        break
      self._teacher_round([r for r in live if r.teachers_turn()], max_new_tokens, max_steps)
      self._student_round(
        [r for r in live if not r.done and not r.teachers_turn()], max_new_tokens, max_steps, shape
      )
      for r in live:
        r.drop_unneeded_caches()
    else:
      raise RuntimeError("text bridge: rows stopped making progress (a bug)")
    return [r.result(self.tokenizer) for r in rows]

  # -- teacher ------------------------------------------------------------------------------------
  def _teacher_from_prefill(self, rows: list[BridgeRow], caches: ForkCaches) -> None:
    """Fork mode: each row's teacher starts from the teacher's cache of its problem's prompt text +
    the student's run as far as the prefill holds it; made (one teacher call) for the problems whose
    holder is still empty, then shared by all their timings' rows."""
    todo: dict[int, tuple[RowCache, str]] = {}
    for i, r in enumerate(rows):
      slot = caches.teacher_rows[i]
      if slot.held is None and not r.done:
        run = caches.tokens[i][len(r.prompt) :]
        todo.setdefault(id(slot), (slot, r.text + continuation_text(self.tokenizer, r.prompt, run)))
    if todo:
      made = self.teacher.prefill([text for _, text in todo.values()], self.options.step_delimiter)
      for (slot, _), m in zip(todo.values(), made):
        slot.keep(m.held, m.maker)
    for i, r in enumerate(rows):
      slot = caches.teacher_rows[i]
      r.teacher_cache = RowCache(slot.held, slot.maker)  # the row's own holder; the arrays are shared

  def _teacher_round(self, rows: list[BridgeRow], max_new: int, max_steps: int | None) -> None:
    """One step boundary: all rows at once; again only for rows whose step ended before any text."""
    for r in rows:
      r.writer, r.at_start = TEACHER, False
    delimiter = self.options.step_delimiter
    while rows:
      requests = [
        CompletionRequest(
          prompt=r.text + continuation_text(self.tokenizer, r.prompt, r.ids),
          cache=r.teacher_cache,
          solution_start=len(r.text),
          max_tokens=min(r.policy.token_limit - r.step_teacher_tokens, max_new - len(r.ids)),
          stop=(delimiter,),
          temperature=r.sampling.temperature,
          top_k=r.sampling.top_k,
          top_p=r.sampling.top_p,
          seed=r.sampling.seed,
        )
        for r in rows
      ]
      for r, q in zip(rows, requests):
        r.teacher_requests.append(hashlib.sha256(self.teacher.request_text(q).encode()).hexdigest()[:16])
      answers = self.teacher.complete(requests)
      rows = [r for r, c in zip(rows, answers) if self._take_teacher(r, c, max_new, max_steps)]

  def _take_teacher(self, r: BridgeRow, c: Completion, max_new: int, max_steps: int | None) -> bool:
    """Appends the teacher's text; True when the same step goes back to the teacher at once."""
    r.round_trips += 1
    r.teacher_read += c.prompt_tokens - c.cached_tokens
    r.teacher_tokens += c.completion_tokens
    r.step_teacher_tokens += c.completion_tokens
    if c.error:
      r.error, r.done = f"teacher: {c.error}", True
      return False
    text = c.text + (c.stop_reason or "")
    r.empty_trips += not c.text.strip()
    r.content = r.content or bool(c.text.strip())
    piece = encode_continuation(self.tokenizer, r.prompt + r.ids, text)
    unk = self.tokenizer.unk_token_id
    if unk is not None and unk in piece:  # never silent: an unknown token is no text
      r.error, r.done = (
        (
          f"the teacher's text {text!r} has no tokens in the student's vocabulary (it encodes to the "
          "unknown token); a step delimiter inside the teacher's words cuts them: use one both "
          "tokenizers hold whole"
        ),
        True,
      )
      return False
    if r.empty_trips >= 2:  # never a round trip per token: a teacher that adds nothing stops the row
      r.error, r.done = "the teacher added no text twice in one step", True
      return False
    ids = piece[: max_new - len(r.ids)]
    ended = c.stop_reason is not None and r.content and len(ids) == len(piece)  # a cut step has not ended
    eos = self.tokenizer.eos_token_id
    if c.at_eos and eos is not None and len(r.ids) + len(ids) < max_new:
      ids.append(int(eos))  # the teacher's EOS ends the row, as in the loop
    r.append(ids, TEACHER, ended)
    self._check_done(r, max_new, max_steps, None)
    r.done = r.done or c.at_eos
    if r.done or ended:
      return False
    left = r.policy.token_limit - r.step_teacher_tokens
    if c.stop_reason is not None and left > 0:
      return True  # a delimiter before any text: the step goes on
    if not ids or left <= 0:
      r.writer = STUDENT  # a hint's end (or a teacher that wrote nothing): the student goes on
    return False

  # -- student ------------------------------------------------------------------------------------
  def _student_round(self, rows: list[BridgeRow], max_new: int, max_steps: int | None, shape: dict) -> None:
    """Every row continues in one loop call until the step before its next teacher step."""
    if not rows:
      return
    limits = []
    for r in rows:  # the coming step is the student's; stop before the window's next one
      nxt = r.next_window_step()
      limits.append(min(max_steps or int(NO_LIMIT), nxt - 1 if nxt is not None else int(NO_LIMIT)))
    request = DecodeRequest(
      [r.prompt for r in rows],
      "never",
      max_new,
      sampling=Sampling.of_rows([r.sampling for r in rows]),
      max_steps=limits if any(x < int(NO_LIMIT) for x in limits) else None,
      prefixes=[r.ids for r in rows],
      prefix_steps=[r.steps_done for r in rows],
      prefix_authors=[r.authors for r in rows],
      **shape,
    )
    caches, _ = starting_rows(  # each row's cache of its previous call (or of the fork's prefill)
      [r.student_cache.held for r in rows],
      [r.prompt + r.ids for r in rows],
      shape["batch_size"],
      shape["max_len"],
    )
    out, final = self.student_decoder.generate_keeping_caches(request.replace(caches=caches))
    for j, (r, res) in enumerate(zip(rows, out)):
      r.student_cache.keep(CachedRow(final, j), self.student_decoder)
      new = res.token_ids[len(r.ids) :]
      start = len(r.prompt) + len(r.ids)
      kept, fired = kept_tokens(
        r, new, res.step_uncertainty, self.masks, lambda j: _policy_uniform(r, start + j)
      )
      append_student(r, new[:kept], self.masks)
      if fired:
        r.writer, r.triggered = TEACHER, r.triggered + 1
      elif kept == len(new) and res.error:
        r.error, r.done = res.error, True
      self._check_done(r, max_new, max_steps, new[kept - 1] if kept and kept == len(new) else None)

  def _check_done(self, r: BridgeRow, max_new: int, max_steps: int | None, last: int | None) -> None:
    self._check_answer(r)
    if len(r.ids) >= max_new or (max_steps is not None and r.steps_done >= max_steps):
      r.done = True
    if last is not None and self.masks.eos[last]:
      r.done = True

  def _check_answer(self, r: BridgeRow) -> None:
    """Ends the row where its answer is complete (the stop table the loop runs), cutting a teacher's
    text that goes on past it; the student's rounds already stop there inside the loop."""
    table = self.masks.stops
    if table is None or r.answer_step is not None:
      return
    state = 0
    for n, t in enumerate(r.ids, 1):
      state = int(table.step(state, t))
      if table.accepting[state]:
        r.end_at_answer(n)
        return


def continuation_text(tokenizer, context: list[int], new: list[int], before: str | None = None) -> str:
  """The text `new` adds after `context` (incremental detokenisation, as vLLM and TGI do it).

  Decoded with its context, minus the context's own decoding (`before`, when the caller has it): a
  piece whose text depends on what precedes it (SentencePiece's leading space, a WordPiece decoder's
  joining space) reads as it does in the whole text, not glued to the prompt.
  """
  if before is None:
    before = tokenizer.decode(context, skip_special_tokens=True)
  whole = tokenizer.decode(list(context) + list(new), skip_special_tokens=True)
  return whole[len(before) :] if whole.startswith(before) else tokenizer.decode(new, skip_special_tokens=True)


def encode_continuation(tokenizer, context: list[int], text: str) -> list[int]:
  """`text` in the student's tokens, to append after `context` so that the row's text grows by
  exactly `text` (checked with `continuation_text`).

  Tried in order, each only when the one before does not grow the text exactly: the text encoded
  alone; after a newline whose tokens are dropped (SentencePiece puts a space before a text encoded
  alone); the whole text encoded, less the context's tokens. When none does, the first (a tokenizer
  that cannot say it: see the caller's check for its unknown token).
  """
  if not text:
    return []
  encode = lambda t: tokenizer(t, add_special_tokens=False)["input_ids"]
  before = tokenizer.decode(context, skip_special_tokens=True)

  def after_newline():
    anchor, both = encode("\n"), encode("\n" + text)
    return both[len(anchor) :] if both[: len(anchor)] == anchor else None

  def after_context():
    ctx, joint = encode(before), encode(before + text)
    return joint[len(ctx) :] if joint[: len(ctx)] == ctx else None

  alone = encode(text)
  for make in (lambda: alone, after_newline, after_context):
    ids = make()
    if ids is not None and continuation_text(tokenizer, context, ids, before) == text:
      return ids
  return alone


def _policy_uniform(r: BridgeRow, position: int) -> float:
  """The loop's policy draw (random:P) for this row at a position: same key, same stream."""
  keys = row_keys(np.asarray([r.sampling.seed], np.int32))
  return float(policy_uniform(keys, np.asarray([position], np.int32))[0])

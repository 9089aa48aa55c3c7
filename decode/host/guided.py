"""The public API of guided decoding: one GuidedDecoder per (student, teacher) pair.

    decoder = GuidedDecoder(student, teacher)
    results = decoder.generate(DecodeRequest(prompt_ids, ["never", "step:1", "entropy:2.0"], 128))

The decoder checks the pair, builds the vocabulary masks once, and runs every call through the one
jitted loop (decode.core.loop.jitted_loop); inputs are padded to fixed buckets (decode.host.batching), caches
placed on the mesh (decode.host.placement), and the final state unpacked into RowResults
(decode.host.results). `compiles` counts the compilations this decoder's calls caused.
"""

from __future__ import annotations

import dataclasses
from typing import Sequence

from decode.api import DecodeRequest
from decode.core.loop import counting_compiles, jitted_loop
from decode.core.policy import Policy, parse_policy
from decode.core.state import LoopConfig, LoopInputs, LoopModel
from decode.core.vocab import VocabMasks, build_masks, check_same_tokenizer, require_steps
from decode.errors import DecodeInputError
from decode.host.batching import (
  buffer_length,
  build_inputs,
  check_limits,
  check_positive_int,
  resolve_policies,
)
from decode.host.options import DecodeOptions
from decode.host.placement import cache_sharding, place_rows, teacher_row_buckets
from decode.host.prefix_caches import (
  PrefixCaches,
  SharedPrefix,
  common_prefix,
  prefill_shared_prefix,
  start_from,
  starting_caches,
)
from decode.host.results import LoopStats, RowResult, loop_stats, unpack_rows
from model.lm import LanguageModel


class GuidedDecoder:
  """Owns the compiled loop for one (student, teacher) pair, optionally on a mesh (a `Decoder`).

  Without a teacher it is the student-only decoder: it still records step-start uncertainty for
  the rows whose policy records it (student-only rows calibrate `q=` triggers)."""

  can_fork = True

  def __init__(
    self,
    student: LanguageModel,
    teacher: LanguageModel | None = None,
    options: DecodeOptions | None = None,
    *,
    mesh=None,
    student_rules=(),
    teacher_rules=(),
    **overrides,
  ):
    self.student, self.teacher = student, teacher
    self.options = opts = dataclasses.replace(options or DecodeOptions(), **overrides)
    for what in ("teacher_chunk", "prefill_chunk", "length_bucket"):
      check_positive_int(what, getattr(opts, what))
    check_positive_int("teacher_sub_batches", opts.teacher_sub_batches, minimum=0)
    tok = student.tokenizer
    if tok is None:
      raise DecodeInputError("the student needs a tokenizer (load it with with_tokenizer=True)")
    if teacher is not None:
      if teacher.tokenizer is None:
        raise DecodeInputError("the teacher needs a tokenizer to check it matches the student's")
      self.vocab_size = check_same_tokenizer(
        tok, teacher.tokenizer, student.cfg.vocab_size, teacher.cfg.vocab_size
      )
    else:
      self.vocab_size = len(tok)
      if student.cfg.vocab_size < self.vocab_size:
        raise DecodeInputError(
          f"the student's embedding has {student.cfg.vocab_size} rows but its tokenizer {self.vocab_size} tokens"
        )
    # EOS: the tokenizer's, plus every id the model configs declare (Llama 3 has two).
    extra_eos = tuple(student.eos_token_ids) + (tuple(teacher.eos_token_ids) if teacher is not None else ())
    self.masks: VocabMasks = build_masks(tok, opts.step_delimiter, extra_eos=extra_eos, stop=opts.stop)
    # Placement: rows over the mesh's 'data' axis; each cache follows its own model's rules.
    self.mesh, self.student_rules, self.teacher_rules = mesh, tuple(student_rules), tuple(teacher_rules)
    # Caches this decoder made carry this token, so a call refuses another decoder's caches (an
    # object of its own: unlike id(self), never reused by a later decoder after garbage collection).
    self._identity = object()
    self.compiles = 0  # compilations of the loop caused by this decoder's calls
    self.last_stats: LoopStats | None = None

  def encode(self, texts: Sequence[str]) -> list[list[int]]:
    tok = self.student.tokenizer
    return [tok(t, add_special_tokens=True)["input_ids"] for t in texts]

  def max_context(self) -> int:
    models = [self.student] + ([self.teacher] if self.teacher is not None else [])
    return min(m.cfg.max_position_embeddings for m in models)

  def buffer_length(self, longest_prompt: int, max_new_tokens: int) -> int:
    """The buffer length T a batch needs: one shape for every batch of a sweep or evaluation."""
    return buffer_length(longest_prompt, max_new_tokens, self.options.length_bucket, self.max_context())

  def check_steps(self, policies: Sequence[Policy], max_steps: int | None = None) -> None:
    """Step boundaries must exist where a policy (or a step limit) uses them: a clear error up front."""
    if max_steps is not None or any(p.needs_teacher for p in policies):
      require_steps(self.masks, self.options.step_delimiter)

  def generate(self, request: DecodeRequest) -> list[RowResult]:
    """Decodes all of the request's prompts in one call of the loop (padded to fixed shapes).

    With `request.caches` (rows of a `prefill`, one per prompt) only what they do not hold is
    prefilled; `request.shared_prefix` is then ignored (the caches hold it already). The request's
    texts are not needed: the teacher reads the student's tokens.
    """
    return self.generate_keeping_caches(request)[0]

  def generate_keeping_caches(self, request: DecodeRequest) -> tuple[list[RowResult], PrefixCaches | None]:
    """`generate`, and the call's final student cache: row i holds prompt i + its generated tokens
    (all but the last token), so a later student-only call on the same rows (the text bridge's next
    round) starts from it and reads only what is new. No teacher cache: the loop's teacher catches
    up lazily, so it need not hold a row. None for an empty request."""
    n = len(request.prompts)
    if n == 0:
      return [], None
    check_limits(request.max_new_tokens, request.max_steps)
    pols = resolve_policies(request.policies, n, has_teacher=self.teacher is not None)
    self.check_steps(pols, request.max_steps)
    inp, T, B = self._inputs(request, pols)
    given, caches, shared_prefix = request.caches, request.caches, request.shared_prefix
    if caches is not None:
      caches = caches.for_call(self._identity)
      inp = start_from(inp, caches, T, B, n, self.teacher is not None)
      shared_prefix = None
    state = self._call(inp, T, B, caches, self._checked(shared_prefix, request.prompts, T))
    if given is not None and given.copy:
      given.consumed = True
    self.last_stats = loop_stats(state)
    lengths = [len(p) for p in request.prompts]
    rows = unpack_rows(state, lengths, [p.spec for p in pols], self.student.tokenizer, self.masks.stops)
    final = PrefixCaches(
      student=state.caches.student,
      teacher=None,
      tokens=[list(p) + r.token_ids for p, r in zip(request.prompts, rows)],
      owner=self._identity,
    )
    return rows, final

  def prefill(
    self,
    prompts: Sequence[Sequence[int]],
    prefixes: Sequence[Sequence[int]],
    *,
    max_len: int,
    batch_size: int | None = None,
    shared_prefix: SharedPrefix | None = None,
  ) -> PrefixCaches:
    """Caches holding each row's prompt + prefix for both models; nothing is decoded.

    Runs the same compiled loop as `generate` (same shapes: no extra compilation), with every row
    done before the first iteration and the teacher asked to prefill.
    """
    n = len(prompts)
    if n == 0 or len(prefixes) != n:
      raise DecodeInputError(f"prefill needs one prefix per prompt, got {len(prefixes)} for {n} prompts")
    budget = [len(q) for q in prefixes]  # rows are done at once: the prefix fills the budget
    request = DecodeRequest(
      prompts, "never", budget, prefixes=prefixes, max_len=max_len, batch_size=batch_size
    )
    inp, T, B = self._inputs(request, [parse_policy("never")] * n, teacher_prefill=self.teacher is not None)
    state = self._call(inp, T, B, None, self._checked(shared_prefix, prompts, T))
    full = [list(p) + list(q) for p, q in zip(prompts, prefixes)]
    return PrefixCaches(
      student=state.caches.student, teacher=state.caches.teacher, tokens=full, owner=self._identity
    )

  def shared_prefix(self, prompts: Sequence[Sequence[int]], *, max_len: int) -> SharedPrefix | None:
    """Both models' caches of the longest prefix all `prompts` share, prefilled once at batch 1.

    None when the prefix is shorter than `min_shared_prefix` tokens (not worth a separate prefill).
    Pass it to every generate / prefill call whose prompts start with it (a sweep: one per student).
    """
    tokens = common_prefix(prompts) if prompts else []
    if len(tokens) < self.options.min_shared_prefix:
      return None
    models = self._loop_models(1, max_len)
    return prefill_shared_prefix(
      tokens, *models, max_len, self.mesh, self.options.prefill_chunk, self._identity
    )

  def _checked(self, shared: SharedPrefix | None, prompts, T: int) -> SharedPrefix | None:
    if shared is not None:
      shared.check(prompts, T, self._identity)
    return shared

  def _inputs(self, request: DecodeRequest, pols: list[Policy], **kw) -> tuple[LoopInputs, int, int]:
    return build_inputs(
      request, pols, self.masks, bucket=self.options.length_bucket, max_context=self.max_context(), **kw
    )

  def _call(self, inp: LoopInputs, T: int, B: int, caches: PrefixCaches | None, shared: SharedPrefix | None):
    has_teacher = self.teacher is not None
    opts = self.options
    lc = LoopConfig(
      max_len=T,
      vocab_size=self.vocab_size,
      prefill_chunk=opts.prefill_chunk,
      teacher_chunk=opts.teacher_chunk,
      has_teacher=has_teacher,
      lockstep=opts.lockstep,
      teacher_row_buckets=teacher_row_buckets(B, opts.teacher_sub_batches, self.mesh) if has_teacher else (),
    )
    student, teacher = self._loop_models(B, T)
    loop_caches, held = starting_caches(student, teacher, B, T, caches, shared)
    if held is not None:  # rows start after the shared prefix the caches already hold
      inp = inp.replace(cache_start=inp.cache_start.replace(student_seen=held, teacher_seen=held))
    with counting_compiles() as built:
      state = jitted_loop(lc, student, teacher, place_rows(inp, B, self.mesh), loop_caches)
    self.compiles += built[0]
    return state

  def _loop_models(self, B: int, T: int) -> tuple[LoopModel, LoopModel | None]:
    """(student, teacher) as the loop sees them at batch B and buffer length T (caches placed by rules)."""

    def bundle(lm: LanguageModel | None, rules) -> LoopModel | None:
      if lm is None:
        return None
      return LoopModel(
        params=lm.params, cfg=lm.cfg, cache_sharding=cache_sharding(lm, B, T, self.mesh, rules)
      )

    return bundle(self.student, self.student_rules), bundle(self.teacher, self.teacher_rules)

"""Host-side driver of the guided loop: validation, fixed-shape batching, one compile per shape.

    decoder = GuidedDecoder(student, teacher)
    results = decoder.generate(prompt_ids, ["never", "step:1", "entropy:2.0"], max_new_tokens=128)

Shapes are bucketed (prompt length, batch) so that a sweep over policies, thresholds, seeds and
sampling parameters reuses one compiled program; `compiles` counts how often the loop was traced.
"""
from __future__ import annotations

import dataclasses
import math
from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np

from decode.loop import run_loop
from decode.policy import Policy, PolicyArrays, PolicyError, parse_policy
from decode.state import PROMPT, STUDENT, TEACHER, LoopCaches, LoopConfig, LoopInputs
from decode.vocab import VocabMasks, build_masks, check_same_tokenizer
from model.errors import UserError
from model.kv_cache import KVCache
from model.lm import LanguageModel

_TRACES = [0]


def _traced_loop(cfg_s, cfg_t, lc: LoopConfig, params_s, params_t, inp: LoopInputs, caches: LoopCaches):
  _TRACES[0] += 1  # runs at trace time only: counts compilations of the loop
  return run_loop(cfg_s, cfg_t, lc, params_s, params_t, inp, caches)


# One jit for every decoder: decoders whose models share configs (e.g. checkpoints of one training
# run, evaluated one after another in a sweep) reuse each other's compiled loop. The caches are
# donated: the loop updates them in place and hands them back in its final state.
_JITTED_LOOP = jax.jit(_traced_loop, static_argnums=(0, 1, 2), donate_argnums=(6,))


class DecodeInputError(UserError):
  """Bad arguments to generation (lengths, limits, policies)."""


@dataclasses.dataclass
class RowResult:
  """One row's output; token lists cover generated tokens only (a forked prefix included)."""

  token_ids: list[int]
  authors: list[int]        # 0 student / 1 teacher per generated token
  step_ids: list[int]       # 1-based step of each generated token
  completion: str
  policy: str
  student_tokens: int
  teacher_tokens: int
  teacher_prefilled: int
  switches: int
  intervention_steps: list[int]
  num_steps: int
  teacher_text: str

  def to_json(self) -> dict:
    return dataclasses.asdict(self)


@dataclasses.dataclass
class PrefixCaches:
  """Student and teacher caches that hold rows' prompt + prefix, to start later calls from.

  Fork mode prefills each problem's prompt + student run once (`GuidedDecoder.prefill`) and starts
  every timing's row from it (`generate(..., caches=caches.rows(idx, B))`), so neither model
  re-reads a prefix a cache already holds. `tokens` (host) are what each row's caches hold; a row
  that reuses them must start with those tokens, which `generate` checks. Caches belong to the
  decoder that made them (its models' params). A `generate` call consumes (donates) the caches it
  is given; `rows` makes the copy it needs, so one prefill serves any number of calls, at the
  price of one more copy of both caches' rows in memory while they live.
  """

  student: KVCache          # L x [B, K, T, D]
  teacher: KVCache | None
  tokens: list[list[int]]   # per row: the ids the caches hold (positions < len - 1 are cached)
  owner: int = 0            # id() of the GuidedDecoder that made them
  copy: bool = False        # made by `rows` for one call (generate copies anything else first)
  consumed: bool = False    # donated to a generate call: its arrays are gone

  def rows(self, idx: Sequence[int], batch_size: int | None = None) -> "PrefixCaches":
    """A copy of rows idx (padded with copies of idx[0] to batch_size), for one generate call."""
    idx = list(idx)
    if self.consumed:
      raise DecodeInputError("these caches were consumed by a generate call; take rows of the prefill's caches "
                             "(PrefixCaches.rows) for each call instead")
    if not idx:
      raise DecodeInputError("PrefixCaches.rows needs at least one row index")
    if min(idx) < 0 or max(idx) >= len(self.tokens):
      raise DecodeInputError(f"cache rows {idx} out of range for {len(self.tokens)} cached rows")
    B = batch_size or len(idx)
    if B < len(idx):
      raise DecodeInputError(f"batch_size={B} is smaller than the {len(idx)} rows asked for")
    full = np.asarray(idx + [idx[0]] * (B - len(idx)), np.int32)
    take = lambda c: None if c is None else jax.tree.map(lambda x: x[full], c)
    return PrefixCaches(student=take(self.student), teacher=take(self.teacher), tokens=[self.tokens[i] for i in idx],
                        owner=self.owner, copy=True)


@dataclasses.dataclass
class LoopStats:
  teacher_calls: int
  iterations: int


def _round_up(n: int, multiple: int) -> int:
  return max(multiple, int(math.ceil(n / multiple)) * multiple)


class GuidedDecoder:
  """Owns the compiled loop for one (student, teacher) pair."""

  def __init__(self, student: LanguageModel, teacher: LanguageModel | None = None, *,
               step_delimiter: str = "\n", teacher_chunk: int = 32, prefill_chunk: int = 64,
               lockstep: bool = False, length_bucket: int = 64, teacher_sub_batches: int = 3, mesh=None,
               student_rules=(), teacher_rules=()):
    self.student, self.teacher = student, teacher
    tok = student.tokenizer
    if tok is None:
      raise DecodeInputError("the student needs a tokenizer (load it with with_tokenizer=True)")
    if teacher is not None:
      if teacher.tokenizer is None:
        raise DecodeInputError("the teacher needs a tokenizer to check it matches the student's")
      self.vocab_size = check_same_tokenizer(tok, teacher.tokenizer, student.cfg.vocab_size, teacher.cfg.vocab_size)
    else:
      self.vocab_size = len(tok)
      if student.cfg.vocab_size < self.vocab_size:
        raise DecodeInputError(f"the student's embedding has {student.cfg.vocab_size} rows but its tokenizer "
                               f"{self.vocab_size} tokens")
    # EOS: the tokenizer's, plus every id the model configs declare (Llama 3 has two).
    extra_eos = tuple(student.eos_token_ids) + (tuple(teacher.eos_token_ids) if teacher is not None else ())
    self.masks: VocabMasks = build_masks(tok, step_delimiter, extra_eos=extra_eos)
    self.teacher_chunk, self.prefill_chunk = teacher_chunk, prefill_chunk
    self.lockstep, self.length_bucket = lockstep, length_bucket
    # Placement: rows over the mesh's 'data' axis; each cache follows its own model's rules.
    self.mesh, self.student_rules, self.teacher_rules = mesh, tuple(student_rules), tuple(teacher_rules)
    for what, value in (("teacher_chunk", teacher_chunk), ("prefill_chunk", prefill_chunk),
                        ("length_bucket", length_bucket)):
      if not isinstance(value, (int, np.integer)) or value < 1:
        raise DecodeInputError(f"{what} must be a positive integer, got {value!r}")
    if not isinstance(teacher_sub_batches, (int, np.integer)) or teacher_sub_batches < 0:
      raise DecodeInputError(f"teacher_sub_batches must be an integer >= 0, got {teacher_sub_batches!r}")
    self.teacher_sub_batches = teacher_sub_batches
    self.compiles = 0  # compilations of the loop triggered by this decoder's calls
    self.last_stats: LoopStats | None = None

  # -- host part -------------------------------------------------------------------------------
  def encode(self, texts: Sequence[str]) -> list[list[int]]:
    tok = self.student.tokenizer
    return [tok(t, add_special_tokens=True)["input_ids"] for t in texts]

  def max_context(self) -> int:
    lens = [self.student.cfg.max_position_embeddings]
    if self.teacher is not None:
      lens.append(self.teacher.cfg.max_position_embeddings)
    return min(lens)

  def _policies(self, policies, n: int) -> list[Policy]:
    if isinstance(policies, (str, Policy)):
      policies = [policies] * n
    if len(policies) != n:
      raise DecodeInputError(f"{len(policies)} policies for {n} prompts; give one per prompt or a single one")
    out = [p if isinstance(p, Policy) else parse_policy(p) for p in policies]
    if self.teacher is None:
      for p in out:
        if p.needs_teacher:
          raise PolicyError(f"policy {p.spec!r} needs a teacher, but none was given (pass --teacher DIR)")
    return out

  def generate(self, prompts: Sequence[Sequence[int]], policies, *, max_new_tokens: int,
               temperature=0.0, top_k=0, top_p=1.0, seeds=0, max_steps: int | None = None,
               prefixes: Sequence[Sequence[int]] | None = None, prefix_steps: Sequence[int] | None = None,
               max_len: int | None = None, batch_size: int | None = None,
               caches: PrefixCaches | None = None) -> list[RowResult]:
    """Decodes all prompts in one call of the loop (padded to fixed shapes).

    prefixes: student-written tokens to continue from (fork mode), with prefix_steps completed steps.
    max_len / batch_size: fixed buckets (buffer length T, rows B), so a sweep keeps one compiled
    shape; by default T = longest prompt + max_new_tokens rounded up to `length_bucket`.
    caches: rows of a `prefill` (one per prompt, `PrefixCaches.rows`), holding a start of each
    row's prompt + prefix; only the rest is prefilled.
    """
    n = len(prompts)
    if n == 0:
      return []
    if not isinstance(max_new_tokens, (int, np.integer)) or max_new_tokens <= 0:
      raise DecodeInputError(f"max_new_tokens must be a positive integer, got {max_new_tokens!r}")
    if max_steps is not None and max_steps <= 0:
      raise DecodeInputError(f"max_steps must be positive, got {max_steps}")
    pols = self._policies(policies, n)
    inp, T, B = self._inputs(prompts, pols, max_new_tokens, temperature, top_k, top_p, seeds, max_steps, prefixes,
                             prefix_steps, max_len, batch_size)
    out = self._run(inp, T, B, caches, n)
    return [self._row(out, i, len(prompts[i]), pols[i].spec) for i in range(n)]

  def prefill(self, prompts: Sequence[Sequence[int]], prefixes: Sequence[Sequence[int]], *, max_len: int,
              batch_size: int | None = None) -> PrefixCaches:
    """Caches holding each row's prompt + prefix for both models; nothing is decoded.

    Runs the same compiled loop as `generate` (same shapes: no extra compilation), with every row
    done before the first iteration and the teacher asked to prefill.
    """
    n = len(prompts)
    if n == 0 or len(prefixes) != n:
      raise DecodeInputError(f"prefill needs one prefix per prompt, got {len(prefixes)} for {n} prompts")
    never = [parse_policy("never")] * n
    budget = [len(q) for q in prefixes]  # rows are done at once: the prefix fills the budget
    inp, T, B = self._inputs(prompts, never, budget, 0.0, 0, 1.0, 0, None, prefixes, None, max_len, batch_size,
                             teacher_prefill=True)
    state = self._call(inp, T, B, None)
    full = [list(p) + list(q) for p, q in zip(prompts, prefixes)]
    return PrefixCaches(student=state.student_cache, teacher=state.teacher_cache, tokens=full, owner=id(self))

  def _inputs(self, prompts, pols, max_new_tokens, temperature, top_k, top_p, seeds, max_steps, prefixes,
              prefix_steps, max_len, batch_size, teacher_prefill: bool = False):
    """Validated, padded LoopInputs (host arrays), the buffer length T and batch B."""
    n = len(prompts)
    prefixes = [list(p) for p in prefixes] if prefixes is not None else [[] for _ in range(n)]
    prefix_steps = list(prefix_steps) if prefix_steps is not None else [0] * n
    if len(prefixes) != n or len(prefix_steps) != n:
      raise DecodeInputError(f"{len(prefixes)} prefixes / {len(prefix_steps)} prefix_steps for {n} prompts")
    for name, value in (("seeds", seeds), ("temperature", temperature), ("top_k", top_k), ("top_p", top_p)):
      if np.ndim(value) and len(value) != n:
        raise DecodeInputError(f"{name} has {len(value)} entries for {n} prompts; give one per prompt or a scalar")
    full = [list(p) + q for p, q in zip(prompts, prefixes)]
    if any(len(p) == 0 for p in prompts):
      raise DecodeInputError("empty prompt: every prompt needs at least one token")
    budgets = np.broadcast_to(np.asarray(max_new_tokens), (n,))
    worst = int(np.argmax([len(p) + int(m) for p, m in zip(prompts, budgets)]))  # the row needing most positions
    longest, new_tokens = len(prompts[worst]), int(budgets[worst])
    need = longest + new_tokens
    if need > self.max_context():
      raise DecodeInputError(
          f"prompt ({longest} tokens) + max_new_tokens ({new_tokens}) = {need} exceeds the "
          f"models' context of {self.max_context()} positions; shorten the prompt or lower max_new_tokens")
    T = max_len or min(_round_up(need, self.length_bucket), self.max_context())
    if T < need or max(len(f) for f in full) >= T:
      raise DecodeInputError(f"max_len={T} is too short for a prompt of {longest} tokens plus "
                             f"{new_tokens} new tokens")
    B = batch_size or n
    if B < n:
      raise DecodeInputError(f"batch_size={B} is smaller than the {n} prompts given")

    def col(values, dtype, fill):
      arr = np.full((B,), fill, dtype)
      arr[:n] = np.broadcast_to(np.asarray(values, dtype), (n,))
      return arr

    tokens = np.zeros((B, T), np.int32)
    authors = np.full((B, T), PROMPT, np.int32)
    step_ids = np.zeros((B, T), np.int32)
    for i, (p, q) in enumerate(zip(prompts, prefixes)):
      tokens[i, :len(p) + len(q)] = list(p) + q
      authors[i, len(p):len(p) + len(q)] = STUDENT
      step_ids[i, len(p):len(p) + len(q)] = self._prefix_step_ids(q)
    pad_policy = [parse_policy("never")] * (B - n)
    inp = LoopInputs(
        tokens=tokens, lengths=col([len(f) for f in full], np.int32, 1), authors=authors, step_ids=step_ids,
        start_steps=col(prefix_steps, np.int32, 0), gen_start=col([len(p) for p in prompts], np.int32, 0),
        max_new=col(max_new_tokens, np.int32, 1),
        max_steps=col(max_steps if max_steps is not None else 2 ** 30, np.int32, 1),
        active=col(True, bool, False), seeds=col(seeds, np.int32, 0),
        temperature=col(temperature, np.float32, 0.0), top_k=col(top_k, np.int32, 0),
        top_p=col(top_p, np.float32, 1.0), policy=PolicyArrays.stack(pols + pad_policy),
        delimiter_mask=self.masks.delimiter, content_mask=self.masks.content, eos_mask=self.masks.eos,
        student_seen=np.zeros((B,), np.int32), teacher_seen=np.zeros((B,), np.int32),
        teacher_prefill=col(teacher_prefill and self.teacher is not None, bool, False))
    if not np.all(np.isfinite(inp.temperature)) or np.any(inp.temperature < 0):
      raise DecodeInputError("temperature must be finite and >= 0 (0 = greedy)")
    if not np.all((inp.top_p > 0) & (inp.top_p <= 1)):
      raise DecodeInputError("top_p must be in (0, 1] (1 = off)")
    if np.any(inp.top_k < 0):
      raise DecodeInputError("top_k must be >= 0 (0 = off)")
    return inp, T, B

  def _run(self, inp: LoopInputs, T: int, B: int, caches: PrefixCaches | None, n: int) -> dict:
    given = caches
    if caches is not None:
      if caches.consumed or caches.owner != id(self):
        raise DecodeInputError("these caches were " + ("consumed by an earlier generate call" if caches.consumed else
                               "made by another GuidedDecoder (other params)") + "; pass rows of this decoder's "
                               "prefill, PrefixCaches.rows(idx, batch_size), to each call")
      if not caches.copy:  # the call donates what it is given: never the prefill's own arrays
        caches = caches.rows(range(len(caches.tokens)), caches.student.batch_size)
      inp = self._with_caches(inp, caches, T, B, n)
    state = self._call(inp, T, B, caches)
    if given is not None and given.copy:
      given.consumed = True
    out = jax.device_get({"tokens": state.tokens, "authors": state.authors, "step_ids": state.step_ids,
                          "length": state.length, "st": state.student_tokens, "tt": state.teacher_tokens,
                          "tp": state.teacher_prefilled, "sw": state.switches, "steps": state.steps_done,
                          "calls": state.teacher_calls, "it": state.iterations})
    self.last_stats = LoopStats(teacher_calls=int(out["calls"]), iterations=int(out["it"]))
    return out

  def _with_caches(self, inp: LoopInputs, caches: PrefixCaches, T: int, B: int, n: int) -> LoopInputs:
    """Checks that given caches fit this call and hold a start of each row; sets the seen pointers."""
    shape = (caches.student.batch_size, caches.student.max_len)
    if shape != (B, T):
      raise DecodeInputError(f"caches have {shape[0]} rows of {shape[1]} positions but this call needs {B} x {T}; "
                             "use PrefixCaches.rows(idx, batch_size) and the same max_len as the prefill")
    if (caches.teacher is None) != (self.teacher is None) or len(caches.tokens) != n:
      raise DecodeInputError(f"caches hold {len(caches.tokens)} rows "
                             f"{'without' if caches.teacher is None else 'with'} a teacher cache; this call has "
                             f"{n} rows {'with' if self.teacher is not None else 'without'} a teacher")
    seen = np.zeros((B,), np.int32)
    for i in range(n):
      row, held = inp.tokens[i, :inp.lengths[i]].tolist(), caches.tokens[i]
      k = min(len(held), len(row)) - 1  # positions the caches hold that this row can use
      if row[:k] != held[:k]:
        raise DecodeInputError(f"row {i}: the given caches hold other tokens than its prompt + prefix; "
                               "pass the cache rows prefilled from this row's problem")
      seen[i] = k
    return inp.replace(student_seen=seen, teacher_seen=seen if self.teacher is not None else inp.teacher_seen)

  def _call(self, inp: LoopInputs, T: int, B: int, caches: PrefixCaches | None):
    has_teacher = self.teacher is not None
    lc = LoopConfig(max_len=T, vocab_size=self.vocab_size, prefill_chunk=self.prefill_chunk,
                    teacher_chunk=self.teacher_chunk, has_teacher=has_teacher, lockstep=self.lockstep,
                    teacher_row_buckets=self._teacher_row_buckets(B) if has_teacher else (),
                    **self._cache_shardings(B, T))
    if caches is None:
      loop_caches = LoopCaches(student=self._zeros(self.student, B, T, lc.student_cache_sharding),
                               teacher=self._zeros(self.teacher, B, T, lc.teacher_cache_sharding)
                               if has_teacher else None)
    else:  # on the layout the loop expects, so a cached call runs the same executable as a fresh one
      place = lambda c, sh: c if sh is None or c is None else jax.device_put(c, sh)
      loop_caches = LoopCaches(student=place(caches.student, lc.student_cache_sharding),
                               teacher=place(caches.teacher, lc.teacher_cache_sharding))
    inp = self._place(inp)
    traces = _TRACES[0]
    state = _JITTED_LOOP(self.student.cfg, self.teacher.cfg if has_teacher else None, lc, self.student.params,
                         self.teacher.params if has_teacher else None, inp, loop_caches)
    self.compiles += _TRACES[0] - traces
    return state

  @staticmethod
  def _zeros(lm: LanguageModel, B: int, T: int, sharding) -> KVCache:
    shape = (B, lm.cfg.num_kv_heads, T, lm.cfg.head_dim)
    zeros = lambda: jnp.zeros(shape, lm.cfg.jnp_dtype, device=sharding)
    return KVCache(keys=tuple(zeros() for _ in range(lm.cfg.num_layers)),
                   values=tuple(zeros() for _ in range(lm.cfg.num_layers)))

  def _teacher_row_buckets(self, B: int) -> tuple[int, ...]:
    """B/2, B/4, ... (`teacher_sub_batches` halvings): sub-batches for the teacher's decode.

    Off when rows are split over devices: a sub-batch would gather cache rows across devices, and
    accelerators, memory-bound at these batch sizes, gain little from fewer rows anyway.
    """
    if self.mesh is not None and self.mesh.shape.get("data", 1) > 1:
      return ()
    return tuple(sorted({max(1, B >> i) for i in range(1, self.teacher_sub_batches + 1)} - {B}))

  def _cache_shardings(self, B: int, T: int) -> dict:
    if self.mesh is None:
      return {}
    from model.kv_cache import CACHE_AXES
    from model.sharding import array_sharding
    out = {}
    for who, lm, rules in (("student", self.student, self.student_rules), ("teacher", self.teacher, self.teacher_rules)):
      if lm is not None:
        shape = (B, lm.cfg.num_kv_heads, T, lm.cfg.head_dim)
        out[f"{who}_cache_sharding"] = array_sharding(CACHE_AXES, shape, self.mesh, rules)
    return out

  def _place(self, inp: LoopInputs) -> LoopInputs:
    if self.mesh is None:
      return jax.tree.map(jnp.asarray, inp)
    from decode.mesh import place_rows, row_sharding
    return place_rows(inp, row_sharding(self.mesh))

  def _prefix_step_ids(self, prefix: list[int]) -> list[int]:
    """Step ids of a forked prefix, by the loop's own rule (delimiter ends a step with content)."""
    ids, step, content = [], 1, False
    for t in prefix:
      ids.append(step)
      content |= bool(self.masks.content[t])
      if self.masks.delimiter[t] and content:
        step, content = step + 1, False
    return ids

  def _row(self, out, i: int, gen_start: int, spec: str) -> RowResult:
    end = int(out["length"][i])
    ids = out["tokens"][i, gen_start:end].tolist()
    authors = out["authors"][i, gen_start:end].tolist()
    steps = out["step_ids"][i, gen_start:end].tolist()
    tok = self.student.tokenizer
    teacher_ids = [t for t, a in zip(ids, authors) if a == TEACHER]
    return RowResult(
        token_ids=ids, authors=authors, step_ids=steps,
        completion=tok.decode(ids, skip_special_tokens=True), policy=spec,
        student_tokens=int(out["st"][i]), teacher_tokens=int(out["tt"][i]),
        teacher_prefilled=int(out["tp"][i]), switches=int(out["sw"][i]),
        intervention_steps=sorted({s for s, a in zip(steps, authors) if a == TEACHER}),
        num_steps=int(out["steps"][i]), teacher_text=tok.decode(teacher_ids, skip_special_tokens=True))

"""The guided decode loop: student and teacher in one `lax.while_loop`.

Each iteration the student reads every row's last token (it is cheap, and thereby sees every token
the teacher wrote). At a step start the row's policy picks the writer of the coming step. If any
row needs the teacher, `lax.cond` enters the teacher branch, which first catches the teacher's
cache up on the tokens it has not seen (chunked), then decodes one token; otherwise the teacher
costs nothing. The whole thing is one pure function of (models, inputs, caches), jitted once per shape:
`jitted_loop` is the one jit every decoder shares, so checkpoints of one architecture compile once.
"""

from __future__ import annotations

import contextlib
import functools

import jax
import jax.numpy as jnp

from decode.core.advance import advance
from decode.core.sampling import SAMPLE_STREAM, policy_uniform, position_key, row_keys, sample_tokens
from decode.core.state import (
  PROMPT,
  STUDENT,
  TEACHER,
  Buffers,
  CacheState,
  Counters,
  ForwardsDone,
  LoopCaches,
  LoopConfig,
  LoopInputs,
  LoopModel,
  LoopState,
  StepState,
  TokenChoice,
  zeros_i32,
)
from model.lm import forward


def _take(buf, idx):
  """buf [B, T], idx [B, C] (clipped) -> [B, C]."""
  return jnp.take_along_axis(buf, jnp.clip(idx, 0, buf.shape[1] - 1), axis=1)


def _uncertainty(logits):
  """Student next-token entropy, max prob and top-1/top-2 margin, each [B]."""
  logp = jax.nn.log_softmax(logits, axis=-1)
  p = jnp.exp(logp)
  entropy = -jnp.sum(jnp.where(p > 0, p * logp, 0.0), axis=-1)
  # Top two by two reductions, not lax.top_k: XLA:CPU sorts the vocabulary for top_k, and this runs
  # at every step start of never rows (their uncertainties calibrate q= triggers).
  first = jnp.max(p, axis=-1)
  second = jnp.max(jnp.where(jnp.arange(p.shape[-1]) == jnp.argmax(p, axis=-1)[:, None], -1.0, p), axis=-1)
  return entropy, first, first - second


def _step_start_uncertainty(s: LoopState, p, student_logits):
  """The student's (entropy, max prob, margin) [B] each at a step start, NaN where not computed.

  The vocabulary-wide softmax runs only when a row at a step start records it (`records_uncertainty`:
  uncertainty triggers and student-only rows, whose values calibrate `q=` triggers)."""
  st = s.step
  records = p.records_uncertainty()  # [B]
  uses = st.at_step_start & ~st.done & records
  B = student_logits.shape[0]
  nan = (jnp.full((B,), jnp.nan),) * 3
  entropy, maxprob, margin = jax.lax.cond(jnp.any(uses), _uncertainty, lambda _: nan, student_logits)
  # Recorded only for the rows that compute them for themselves, so whether a row carries them never
  # depends on the other rows of its batch.
  recorded = jnp.where(records[:, None], jnp.stack([entropy, maxprob, margin], axis=-1), jnp.nan)
  return (entropy, maxprob, margin), recorded  # recorded [B, 3]


def catch_up(model: LoopModel, tokens, cache, seen, target, chunk: int, buckets: tuple[int, ...] = ()):
  """Feeds tokens [seen, target) of each row into `cache`, `chunk` positions per forward.

  A while_loop with a data-dependent trip count: the cost follows the longest row's backlog, not
  the buffer width, and rows already caught up (seen == target) write nothing. With `buckets`,
  each chunk's forward runs on a sub-batch of the rows that still have a backlog (`forward_rows`),
  so one row catching up mid-run costs one row's prefill, not the batch's.
  Returns (cache, new seen [B], tokens processed per row [B]).
  """

  def cond(c):
    return jnp.any(c[0] < target)

  def body(c):
    pos, cache = c
    n = jnp.clip(target - pos, 0, chunk)
    toks = _take(tokens, pos[:, None] + jnp.arange(chunk)[None, :])
    _, cache = forward_rows(model, buckets, toks, pos, n, cache, n > 0, with_logits=False)
    return pos + n, cache

  start = jnp.minimum(seen, target)
  pos, cache = jax.lax.while_loop(cond, body, (start, cache))
  return cache, pos, pos - start


def forward_rows(
  model: LoopModel, buckets: tuple[int, ...], tokens, start, n, cache, need, *, with_logits: bool
):
  """forward of tokens [B, C] for the rows in `need` [B] -> (logits [B, C, V] valid where `need`, or
  None without logits; cache).

  With `buckets` (sub-batch sizes < B), the forward runs on the smallest bucket of rows that holds
  every row in need (rows in need first, then filler rows that write nothing): on a compute-bound
  device a step's tail, where a few rows still wait for the teacher, or one row catching up on its
  prefix, then costs a few rows' forward instead of the whole batch's (experiments/bench/BENCHMARKS.md).
  """
  cfg, params = model.cfg, model.params
  B = tokens.shape[0]

  def keep(out, idx=None):
    """Rows' logits placed in [B, C, V]; without logits an empty placeholder (hidden states unused)."""
    if not with_logits:
      return jnp.zeros((0,), jnp.float32)
    return out if idx is None else jnp.zeros((B,) + out.shape[1:], out.dtype).at[idx].set(out)

  def full(cache):
    out, cache = forward(cfg, params, tokens, start, n, cache, with_logits=with_logits)
    return keep(out), cache

  sizes = sorted({b for b in buckets if 0 < b < B})
  if not sizes:
    out, cache = full(cache)
    return (out if with_logits else None), cache
  order = jnp.argsort(~need, stable=True)  # [B] rows in need first

  def sub_batch(b: int):
    def run(cache):
      idx = order[:b]  # [b]
      out, cache = forward(
        cfg, params, tokens[idx], start[idx], n[idx], cache, rows=idx, with_logits=with_logits
      )
      return keep(out, idx), cache

    return run

  # A chain of (run | pass through) conds, exactly one of which runs, rather than one multi-way
  # switch: XLA copies every cache buffer into a conditional whose branches all update it in place
  # (measured: +120 ms per teacher call at B=16); a branch that passes it through costs nothing.
  count = jnp.sum(need)
  bounds = [0] + sizes + [B]
  shape = jax.eval_shape(full, cache)[0]
  total = jnp.zeros(shape.shape, shape.dtype)

  def passthrough(c):
    return jnp.zeros(shape.shape, shape.dtype), c

  for lo, hi, run in zip(bounds[:-1], bounds[1:], [sub_batch(b) for b in sizes] + [full]):
    out, cache = jax.lax.cond((count > lo) & (count <= hi), run, passthrough, cache)
    total += out
  return (total if with_logits else None), cache


def _teacher_logits(teacher: LoopModel, lc: LoopConfig, s: LoopState, need):
  """Catch the teacher up on unseen tokens of rows in `need`, then its logits at their last token.

  Tokens [seen, length-1) are read in chunks (no LM head); the last token is decoded alone, so a
  teacher writing a step pays one token per iteration and never re-reads what it cached.
  Returns (logits [B, V], teacher cache, teacher_seen [B], teacher_forwarded counter [B]).
  """
  b, c = s.buffers, s.caches
  target = jnp.where(need, b.length - 1, c.teacher_seen)
  cache, _, caught = catch_up(
    teacher, b.tokens, c.teacher, c.teacher_seen, target, lc.teacher_chunk, lc.teacher_row_buckets
  )
  last = b.length - 1
  n = need.astype(jnp.int32)
  logits, cache = forward_rows(
    teacher, lc.teacher_row_buckets, _take(b.tokens, last[:, None]), last, n, cache, need, with_logits=True
  )
  seen = jnp.where(need, b.length, c.teacher_seen)
  return logits[:, 0, : lc.vocab_size], cache, seen, s.counters.teacher_forwarded + caught + n


def _init_state(
  lc: LoopConfig, student: LoopModel, teacher: LoopModel | None, inp: LoopInputs, caches: LoopCaches
) -> LoopState:
  pr, start = inp.prompts, inp.cache_start
  B = pr.tokens.shape[0]
  active = inp.limits.active
  # Student prefill, chunked, from what the given cache holds: everything but each row's last
  # token, which the first iteration feeds.
  student_cache, _, _ = catch_up(
    student,
    pr.tokens,
    student.placed(caches.student),
    start.student_seen,
    jnp.where(active, pr.lengths - 1, 0),
    lc.prefill_chunk,
  )
  teacher_cache, teacher_seen, forwarded = None, zeros_i32(B), zeros_i32(B)
  if lc.has_teacher:
    # Rows asking for a teacher prefill (to hand their caches to later calls) get it now; the
    # others catch the teacher up lazily, when it first writes for them.
    target = jnp.where(active & start.teacher_prefill, pr.lengths - 1, start.teacher_seen)
    teacher_cache, teacher_seen, forwarded = catch_up(
      teacher,
      pr.tokens,
      teacher.placed(caches.teacher),
      start.teacher_seen,
      target,
      lc.teacher_chunk,
      lc.teacher_row_buckets,
    )
  T = pr.tokens.shape[1]
  generated = jnp.arange(T)[None, :] < pr.lengths[:, None]

  def count(who):
    return jnp.sum((pr.authors == who) & generated, axis=1).astype(jnp.int32)

  has_prefix = pr.lengths > pr.gen_start
  lim = inp.limits
  # A prefix that already completes the answer (a teacher's step ending "#### N") ends the row.
  answered = jnp.zeros((B,), bool) if inp.vocab.stops is None else inp.vocab.stops.accepting[pr.stop_state]
  return LoopState(
    buffers=Buffers(
      tokens=pr.tokens,
      authors=pr.authors,
      step_ids=pr.step_ids,
      length=pr.lengths,
      step_metrics=jnp.full(pr.tokens.shape + (3,), jnp.nan, jnp.float32),
    ),
    step=StepState(
      done=~active
      | (pr.lengths - pr.gen_start >= lim.max_new)
      | (pr.start_steps >= lim.max_steps)
      | answered,
      writer=zeros_i32(B),
      at_step_start=jnp.ones((B,), bool),
      step_has_content=jnp.zeros((B,), bool),
      steps_done=pr.start_steps,
      step_teacher_tokens=zeros_i32(B),
      triggered=zeros_i32(B),
      last_author=jnp.where(has_prefix, STUDENT, PROMPT).astype(jnp.int32),
      nonfinite_at=jnp.full((B,), -1, jnp.int32),
      stop_state=pr.stop_state,
    ),
    counters=Counters(
      student_tokens=count(STUDENT),
      teacher_tokens=count(TEACHER),
      teacher_forwarded=forwarded,
      switches=zeros_i32(B),
      teacher_calls=jnp.zeros((), jnp.int32),
      iterations=jnp.zeros((), jnp.int32),
    ),
    caches=CacheState(student=student_cache, teacher=teacher_cache, teacher_seen=teacher_seen),
  )


def _iteration(
  lc: LoopConfig, student: LoopModel, teacher: LoopModel | None, inp: LoopInputs, keys, s: LoopState
) -> LoopState:
  b, st, c = s.buffers, s.step, s.caches
  B = b.length.shape[0]
  last = b.length - 1
  active = ~st.done

  # 1. The student reads every row's last token.
  s_logits, student_cache = forward(
    student.cfg, student.params, _take(b.tokens, last[:, None]), last, jnp.ones((B,), jnp.int32), c.student
  )
  s_logits = s_logits[:, 0, : lc.vocab_size]  # [B, V]

  # 2. Who writes: the policy decides at step starts; a hint hands back after token_limit tokens.
  p = inp.policy
  uncertainty, metrics = _step_start_uncertainty(s, p, s_logits)
  writer, fired = st.writer, jnp.zeros((B,), bool)
  if lc.has_teacher:
    uniform = policy_uniform(keys, b.length)  # [B]
    wants, fired = p.teacher_writes(st.steps_done + 1, *uncertainty, uniform, st.triggered)
    writer = jnp.where(st.at_step_start, wants.astype(jnp.int32), st.writer)
    fired &= st.at_step_start
    writer = jnp.where((writer == TEACHER) & p.hands_back(st.step_teacher_tokens), STUDENT, writer)
  writer = jnp.where(active, writer, STUDENT)
  need = (writer == TEACHER) & active

  # 3. The teacher runs only when some row needs it (lockstep: always, for every active row).
  teacher_cache, teacher_seen = c.teacher, c.teacher_seen
  forwarded, calls = s.counters.teacher_forwarded, s.counters.teacher_calls
  logits = s_logits
  if lc.has_teacher:
    run_rows = active if lc.lockstep else need

    def teacher_branch(_):
      return _teacher_logits(teacher, lc, s, run_rows) + (calls + 1,)

    def skip(_):
      return jnp.zeros_like(s_logits), c.teacher, c.teacher_seen, forwarded, calls

    t_logits, teacher_cache, teacher_seen, forwarded, calls = jax.lax.cond(
      jnp.any(run_rows), teacher_branch, skip, None
    )
    logits = jnp.where(need[:, None], t_logits, s_logits)

  # 4. Sample; a row's key at a position is shared by runs that differ only in policy.
  sp = inp.sampling
  tok = sample_tokens(
    logits, sp.temperature, sp.top_k, sp.top_p, position_key(keys, b.length, SAMPLE_STREAM)
  )  # [B]

  # 5. Write and account.
  caches = CacheState(student=student_cache, teacher=teacher_cache, teacher_seen=teacher_seen)
  finite = jnp.all(jnp.isfinite(logits), axis=-1)  # [B]: a NaN/inf row stops instead of writing
  choice = TokenChoice(token=tok, writer=writer, fired=fired, finite=finite, step_metrics=metrics)
  return advance(s, inp, lc.max_len, choice, ForwardsDone(caches, forwarded, calls))


def run_loop(
  lc: LoopConfig, student: LoopModel, teacher: LoopModel | None, inp: LoopInputs, caches: LoopCaches
) -> LoopState:
  """Pure: prefill the student, then iterate until every row is done. Jit with `lc` static.

  `caches` are fresh zeros or rows of an earlier call's final caches (with inp.cache_start saying
  how much of each row they hold); the returned state carries the final caches.
  """
  state = _init_state(lc, student, teacher, inp, caches)
  keys = row_keys(inp.sampling.seeds)  # [B] once per call; each use folds in position and stream
  body = functools.partial(_iteration, lc, student, teacher, inp, keys)
  return jax.lax.while_loop(lambda s: ~jnp.all(s.step.done), body, state)


# One jit for every decoder: decoders whose models share configs (e.g. checkpoints of one training
# run, evaluated one after another in a sweep) reuse each other's compiled loop. The caches are
# donated: the loop updates them in place and hands them back in its final state.
jitted_loop = jax.jit(run_loop, static_argnums=0, donate_argnames="caches")


@functools.partial(jax.jit, static_argnames="chunk", donate_argnames="cache")
def jitted_prefill(model: LoopModel, tokens, cache, target, chunk: int):
  """Cache of tokens [B, T] up to positions < target [B], in chunks (a shared prefix, at batch 1)."""
  return catch_up(model, tokens, cache, jnp.zeros_like(target), target, chunk)[0]


_COMPILE_EVENT = "/jax/core/compile/backend_compile_duration"  # jax.monitoring: one per executable built


@contextlib.contextmanager
def counting_compiles(fun=run_loop):
  """Counts the executables XLA builds for `fun` (jitted) while the block runs: a list whose one
  element the block reads after it. Read from jax.monitoring's compile events, so a recompile of
  the loop (a new shape, or new input layouts) shows, and cache hits do not."""
  name, built = f"jit({fun.__name__})", [0]

  def listen(event: str, _duration: float, **meta) -> None:
    if event == _COMPILE_EVENT and meta.get("fun_name") == name:
      built[0] += 1

  jax.monitoring.register_event_duration_secs_listener(listen)
  try:
    yield built
  finally:
    jax.monitoring.unregister_event_duration_listener(listen)

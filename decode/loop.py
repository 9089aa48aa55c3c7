"""The guided decode loop: student and teacher in one `lax.while_loop`.

Each iteration the student reads every row's last token (it is cheap, and thereby sees every token
the teacher wrote). At a step start the row's policy picks the writer of the coming step. If any
row needs the teacher, `lax.cond` enters the teacher branch, which first catches the teacher's
cache up on the tokens it has not seen (chunked), then decodes one token; otherwise the teacher
costs nothing. The whole thing is one pure function of (params, inputs), jitted once per shape.
"""
from __future__ import annotations

import functools

import jax
import jax.numpy as jnp

from decode import policy as pol
from decode.sampling import position_key, sample_tokens
from decode.state import STUDENT, TEACHER, LoopCaches, LoopConfig, LoopInputs, LoopState, zeros_i32
from model.config import DecoderConfig
from model.lm import forward

_SAMPLE_STREAM, _POLICY_STREAM = 0, 1


def _take(buf, idx):
  """buf [B, T], idx [B, C] (clipped) -> [B, C]."""
  return jnp.take_along_axis(buf, jnp.clip(idx, 0, buf.shape[1] - 1), axis=1)


def _uncertainty(logits):
  """Student next-token entropy, max prob and top-1/top-2 margin, each [B]."""
  logp = jax.nn.log_softmax(logits, axis=-1)
  p = jnp.exp(logp)
  entropy = -jnp.sum(jnp.where(p > 0, p * logp, 0.0), axis=-1)
  top2 = jax.lax.top_k(p, 2)[0]
  return entropy, top2[:, 0], top2[:, 0] - top2[:, 1]


def _policy_wants_teacher(s: LoopState, inp: LoopInputs, student_logits) -> tuple[jax.Array, jax.Array]:
  """At a step start: (teacher writes the coming step [B], it was a trigger [B])."""
  p = inp.policy
  k = s.steps_done + 1  # the coming step, 1-based
  in_window = (k >= p.step_lo) & (k < p.step_hi)
  # The vocabulary-wide softmax only runs when a row at a step start has an uncertainty trigger.
  uses_metric = s.at_step_start & ~s.done & (p.trigger >= pol.TRIGGER_ENTROPY) & (p.trigger <= pol.TRIGGER_MARGIN)
  B = student_logits.shape[0]
  entropy, maxprob, margin = jax.lax.cond(
      jnp.any(uses_metric), _uncertainty, lambda _: (jnp.zeros((B,)),) * 3, student_logits)
  u = jax.vmap(lambda key: jax.random.uniform(key))(position_key(
      jax.vmap(jax.random.key)(inp.seeds), s.length, _POLICY_STREAM))
  fires = ((p.trigger == pol.TRIGGER_ENTROPY) & (entropy > p.threshold)
           | (p.trigger == pol.TRIGGER_MAXPROB) & (maxprob < p.threshold)
           | (p.trigger == pol.TRIGGER_MARGIN) & (margin < p.threshold)
           | (p.trigger == pol.TRIGGER_RANDOM) & (u < p.threshold))
  fires &= (s.triggered < p.budget) & ~in_window
  return in_window | fires, fires


def catch_up(cfg: DecoderConfig, params, tokens, cache, seen, target, chunk: int, buckets: tuple[int, ...] = ()):
  """Feeds tokens [seen, target) of each row into `cache`, `chunk` positions per forward.

  A while_loop with a data-dependent trip count: the cost follows the longest row's backlog, not
  the buffer width, and rows already caught up (seen == target) write nothing. With `buckets`,
  each chunk's forward runs on a sub-batch of the rows that still have a backlog (`_forward_rows`),
  so one row catching up mid-run costs one row's prefill, not the batch's.
  Returns (cache, new seen [B], tokens processed per row [B]).
  """
  def cond(c):
    return jnp.any(c[0] < target)

  def body(c):
    pos, cache = c
    n = jnp.clip(target - pos, 0, chunk)
    toks = _take(tokens, pos[:, None] + jnp.arange(chunk)[None, :])
    _, cache = _forward_rows(cfg, buckets, params, toks, pos, n, cache, n > 0, with_logits=False)
    return pos + n, cache

  start = jnp.minimum(seen, target)
  pos, cache = jax.lax.while_loop(cond, body, (start, cache))
  return cache, pos, pos - start


def _forward_rows(cfg: DecoderConfig, buckets: tuple[int, ...], params, tokens, start, n, cache, need, *,
                  with_logits: bool):
  """forward of tokens [B, C] for the rows in `need` [B] -> (logits [B, C, V] valid where `need`, or
  None without logits; cache).

  With `buckets` (sub-batch sizes < B), the forward runs on the smallest bucket of rows that holds
  every row in need (rows in need first, then filler rows that write nothing): on a compute-bound
  device a step's tail, where a few rows still wait for the teacher, or one row catching up on its
  prefix, then costs a few rows' forward instead of the whole batch's (experiments/bench/BENCHMARKS.md).
  """
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
      out, cache = forward(cfg, params, tokens[idx], start[idx], n[idx], cache, rows=idx, with_logits=with_logits)
      return keep(out, idx), cache
    return run

  # A chain of (run | pass through) conds, exactly one of which runs, rather than one multi-way
  # switch: XLA copies every cache buffer into a conditional whose branches all update it in place
  # (measured: +120 ms per teacher call at B=16); a branch that passes it through costs nothing.
  count = jnp.sum(need)
  bounds = [0] + sizes + [B]
  shape = jax.eval_shape(full, cache)[0]
  total = jnp.zeros(shape.shape, shape.dtype)
  passthrough = lambda c: (jnp.zeros(shape.shape, shape.dtype), c)
  for lo, hi, run in zip(bounds[:-1], bounds[1:], [sub_batch(b) for b in sizes] + [full]):
    out, cache = jax.lax.cond((count > lo) & (count <= hi), run, passthrough, cache)
    total += out
  return (total if with_logits else None), cache


def _teacher_logits(cfg_t: DecoderConfig, lc: LoopConfig, params_t, s: LoopState, need):
  """Catch the teacher up on unseen tokens of rows in `need`, then its logits at their last token.

  Tokens [seen, length-1) are prefilled in chunks (no LM head); the last token is decoded alone,
  so a teacher writing a step pays one token per iteration and never re-reads what it cached.
  """
  target = jnp.where(need, s.length - 1, s.teacher_seen)
  cache, _, caught = catch_up(cfg_t, params_t, s.tokens, s.teacher_cache, s.teacher_seen, target, lc.teacher_chunk,
                              lc.teacher_row_buckets)
  last = s.length - 1
  n = need.astype(jnp.int32)
  logits, cache = _decode_rows(cfg_t, lc, params_t, _take(s.tokens, last[:, None]), last, n, cache, need)
  seen = jnp.where(need, s.length, s.teacher_seen)
  return logits, cache, seen, s.teacher_prefilled + caught + n


def _decode_rows(cfg: DecoderConfig, lc: LoopConfig, params, tokens, start, n, cache, need):
  """One-token forward of tokens [B, 1] for the rows in `need` [B]; logits [B, V], valid where `need`."""
  logits, cache = _forward_rows(cfg, lc.teacher_row_buckets, params, tokens, start, n, cache, need, with_logits=True)
  return logits[:, 0, :lc.vocab_size], cache


def _placed(cache, sharding):
  """Pins a cache to its model's layout (rows over 'data', kv heads per the model's rules)."""
  return cache if sharding is None else jax.lax.with_sharding_constraint(cache, sharding)


def _init_state(cfg_s: DecoderConfig, cfg_t: DecoderConfig | None, lc: LoopConfig, params_s, params_t,
                inp: LoopInputs, caches: LoopCaches) -> LoopState:
  B, T = inp.tokens.shape
  tokens, authors, step_ids = inp.tokens, inp.authors, inp.step_ids
  # Student prefill, chunked, from what the given cache holds: everything but each row's last
  # token, which the first iteration feeds.
  student_cache, _, _ = catch_up(cfg_s, params_s, tokens, _placed(caches.student, lc.student_cache_sharding),
                                 inp.student_seen, jnp.where(inp.active, inp.lengths - 1, 0), lc.prefill_chunk)
  teacher_cache, teacher_seen, prefilled = None, zeros_i32(B), zeros_i32(B)
  if lc.has_teacher:
    # Rows asking for a teacher prefill (to hand their caches to later calls) get it now; the
    # others catch the teacher up lazily, when it first writes for them.
    target = jnp.where(inp.active & inp.teacher_prefill, inp.lengths - 1, inp.teacher_seen)
    teacher_cache, teacher_seen, prefilled = catch_up(
        cfg_t, params_t, tokens, _placed(caches.teacher, lc.teacher_cache_sharding), inp.teacher_seen, target,
        lc.teacher_chunk, lc.teacher_row_buckets)
  generated = jnp.arange(T)[None, :] < inp.lengths[:, None]
  count = lambda who: jnp.sum((authors == who) & generated, axis=1).astype(jnp.int32)
  has_prefix = inp.lengths > inp.gen_start
  return LoopState(
      tokens=tokens, authors=authors, step_ids=step_ids, length=inp.lengths,
      done=~inp.active | (inp.lengths - inp.gen_start >= inp.max_new) | (inp.start_steps >= inp.max_steps),
      student_cache=student_cache, teacher_cache=teacher_cache,
      teacher_seen=teacher_seen, writer=zeros_i32(B), at_step_start=jnp.ones((B,), bool),
      step_has_content=jnp.zeros((B,), bool), steps_done=inp.start_steps,
      step_teacher_tokens=zeros_i32(B), triggered=zeros_i32(B),
      last_author=jnp.where(has_prefix, STUDENT, -1).astype(jnp.int32),
      student_tokens=count(STUDENT), teacher_tokens=count(TEACHER), teacher_prefilled=prefilled,
      switches=zeros_i32(B), teacher_calls=jnp.zeros((), jnp.int32), iterations=jnp.zeros((), jnp.int32))


def _iteration(cfg_s, cfg_t, lc: LoopConfig, params_s, params_t, inp: LoopInputs, s: LoopState) -> LoopState:
  B = s.length.shape[0]
  rows = jnp.arange(B)
  last = s.length - 1
  active = ~s.done

  # 1. The student reads every row's last token.
  s_logits, student_cache = forward(cfg_s, params_s, _take(s.tokens, last[:, None]), last,
                                    jnp.ones((B,), jnp.int32), s.student_cache)
  s_logits = s_logits[:, 0, :lc.vocab_size]  # [B, V]

  # 2. Who writes: the policy decides at step starts; a hint hands back after token_limit tokens.
  writer, fired = s.writer, jnp.zeros((B,), bool)
  if lc.has_teacher:
    wants, fired = _policy_wants_teacher(s, inp, s_logits)
    writer = jnp.where(s.at_step_start, wants.astype(jnp.int32), s.writer)
    fired &= s.at_step_start
    writer = jnp.where((writer == TEACHER) & (s.step_teacher_tokens >= inp.policy.token_limit), STUDENT, writer)
  writer = jnp.where(active, writer, STUDENT)
  need = (writer == TEACHER) & active

  # 3. The teacher runs only when some row needs it (lockstep: always, for every active row).
  teacher_cache, teacher_seen, prefilled, calls = s.teacher_cache, s.teacher_seen, s.teacher_prefilled, s.teacher_calls
  logits = s_logits
  if lc.has_teacher:
    run_rows = active if lc.lockstep else need

    def teacher_branch(_):
      out = _teacher_logits(cfg_t, lc, params_t, s, run_rows)
      return out + (calls + 1,)

    def skip(_):
      return jnp.zeros_like(s_logits), s.teacher_cache, s.teacher_seen, s.teacher_prefilled, calls

    t_logits, teacher_cache, teacher_seen, prefilled, calls = jax.lax.cond(
        jnp.any(run_rows), teacher_branch, skip, None)
    logits = jnp.where(need[:, None], t_logits, s_logits)

  # 4. Sample; a row's key at a position is shared by runs that differ only in policy.
  keys = position_key(jax.vmap(jax.random.key)(inp.seeds), s.length, _SAMPLE_STREAM)
  tok = sample_tokens(logits, inp.temperature, inp.top_k, inp.top_p, keys)  # [B]

  # 5. Write and account.
  pos = jnp.where(active, s.length, lc.max_len)  # inactive rows write nowhere (dropped)
  step = s.steps_done + 1
  tokens = s.tokens.at[rows, pos].set(tok, mode="drop")
  authors = s.authors.at[rows, pos].set(writer, mode="drop")
  step_ids = s.step_ids.at[rows, pos].set(step, mode="drop")
  is_teacher = need.astype(jnp.int32)
  is_student = (active & ~need).astype(jnp.int32)
  switched = active & (s.last_author >= 0) & (s.last_author != writer)

  has_content = s.step_has_content | inp.content_mask[tok]
  step_end = active & inp.delimiter_mask[tok] & has_content
  steps_done = s.steps_done + step_end.astype(jnp.int32)
  length = s.length + active.astype(jnp.int32)
  done = s.done | (active & (inp.eos_mask[tok] | (length - inp.gen_start >= inp.max_new)
                             | (steps_done >= inp.max_steps) | (length >= lc.max_len)))
  return s.replace(
      tokens=tokens, authors=authors, step_ids=step_ids, length=length, done=done,
      student_cache=student_cache, teacher_cache=teacher_cache, teacher_seen=teacher_seen,
      writer=writer,
      at_step_start=jnp.where(active, step_end, s.at_step_start),
      step_has_content=jnp.where(step_end, False, jnp.where(active, has_content, s.step_has_content)),
      steps_done=steps_done,
      step_teacher_tokens=jnp.where(step_end, 0, s.step_teacher_tokens + is_teacher),
      triggered=s.triggered + (fired & active).astype(jnp.int32),
      last_author=jnp.where(active, writer, s.last_author),
      student_tokens=s.student_tokens + is_student, teacher_tokens=s.teacher_tokens + is_teacher,
      teacher_prefilled=prefilled, switches=s.switches + switched.astype(jnp.int32),
      teacher_calls=calls, iterations=s.iterations + 1)


def run_loop(cfg_s: DecoderConfig, cfg_t: DecoderConfig | None, lc: LoopConfig, params_s, params_t,
             inp: LoopInputs, caches: LoopCaches) -> LoopState:
  """Pure: prefill the student, then iterate until every row is done. Jit with the configs static.

  `caches` are fresh zeros or rows of an earlier call's final caches (with inp.*_seen saying how
  much of each row they hold); the returned state carries the final caches.
  """
  state = _init_state(cfg_s, cfg_t, lc, params_s, params_t, inp, caches)
  body = functools.partial(_iteration, cfg_s, cfg_t, lc, params_s, params_t, inp)
  return jax.lax.while_loop(lambda s: ~jnp.all(s.done), body, state)

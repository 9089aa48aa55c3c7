"""Host side of a loop call: validate arguments and pad them into fixed-shape LoopInputs.

Shapes are bucketed (buffer length T to a multiple of `length_bucket`, rows to a fixed batch B),
so a sweep over policies, thresholds, seeds and sampling parameters reuses one compiled program.
`buffer_length` is the one rule for T; sweeps and evaluation ask it rather than rounding themselves.
"""

from __future__ import annotations

import math

import numpy as np

from decode.api import DecodeRequest
from decode.core.advance import prefix_step_ids
from decode.core.policy import NO_LIMIT, Policy, PolicyArrays, parse_policy
from decode.core.state import (
  PROMPT,
  STUDENT,
  TEACHER,
  CacheStart,
  LoopInputs,
  Prompts,
  RowLimits,
  SamplingParams,
)
from decode.core.vocab import VocabMasks
from decode.errors import DecodeInputError, PolicyError


def round_up(n: int, multiple: int) -> int:
  return max(multiple, int(math.ceil(n / multiple)) * multiple)


def buffer_length(longest_prompt: int, max_new_tokens: int, bucket: int, max_context: int) -> int:
  """T for prompts up to `longest_prompt` tokens plus `max_new_tokens`: rounded up to `bucket`, within context."""
  need = longest_prompt + max_new_tokens
  if need > max_context:
    raise DecodeInputError(
      f"prompt ({longest_prompt} tokens) + max_new_tokens ({max_new_tokens}) = {need} exceeds the models' "
      f"context of {max_context} positions; shorten the prompt or lower max_new_tokens"
    )
  return min(round_up(need, bucket), max_context)


def resolve_policies(policies, n: int, has_teacher: bool) -> list[Policy]:
  """One Policy per prompt, from a spec, a Policy, or one of either per prompt."""
  if isinstance(policies, (str, Policy)):
    policies = [policies] * n
  if len(policies) != n:
    raise DecodeInputError(f"{len(policies)} policies for {n} prompts; give one per prompt or a single one")
  out = [p if isinstance(p, Policy) else parse_policy(p) for p in policies]
  if not has_teacher:
    for p in out:
      if p.needs_teacher:
        raise PolicyError(f"policy {p.spec!r} needs a teacher, but none was given (pass --teacher DIR)")
  return out


def check_positive_int(what: str, value, minimum: int = 1) -> None:
  if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value < minimum:
    raise DecodeInputError(f"{what} must be an integer >= {minimum}, got {value!r}")


def check_limits(max_new_tokens, max_steps) -> None:
  """Each limit is one positive int or one per prompt (the text bridge stops rows at different steps)."""
  for v in np.ravel(max_new_tokens):
    check_positive_int("max_new_tokens", v)
  for v in np.ravel(max_steps) if max_steps is not None else ():
    check_positive_int("max_steps", v)


def build_inputs(
  request: DecodeRequest,
  policies: list[Policy],
  vocab: VocabMasks,
  *,
  bucket: int,
  max_context: int,
  teacher_prefill: bool = False,
) -> tuple[LoopInputs, int, int]:
  """Validated, padded LoopInputs (host arrays), the buffer length T and the batch B.

  `policies`: the request's, resolved (one Policy per prompt). The request's prefix_authors are
  STUDENT / TEACHER per prefix token (the text bridge's prefixes hold the teacher's steps); by
  default every prefix token is the student's. Rows past the prompts (B > n) are inactive padding:
  policy never, never decoded.
  """
  prompts, prefix_authors, max_new_tokens = request.prompts, request.prefix_authors, request.max_new_tokens
  max_len, batch_size, max_steps = request.max_len, request.batch_size, request.max_steps
  sp = request.sampling
  seeds, temperature, top_k, top_p = sp.seed, sp.temperature, sp.top_k, sp.top_p
  prefixes, prefix_steps = request.prefixes, request.prefix_steps
  n = len(prompts)
  prefixes = [list(p) for p in prefixes] if prefixes is not None else [[] for _ in range(n)]
  prefix_steps = list(prefix_steps) if prefix_steps is not None else [0] * n
  if len(prefixes) != n or len(prefix_steps) != n:
    raise DecodeInputError(f"{len(prefixes)} prefixes / {len(prefix_steps)} prefix_steps for {n} prompts")
  for name, value in (("seed", seeds), ("temperature", temperature), ("top_k", top_k), ("top_p", top_p)):
    if np.ndim(value) and len(value) != n:
      raise DecodeInputError(
        f"{name} has {len(value)} entries for {n} prompts; give one per prompt or a scalar"
      )
  if any(len(p) == 0 for p in prompts):
    raise DecodeInputError("empty prompt: every prompt needs at least one token")
  if prefix_authors is not None and (
    len(prefix_authors) != n
    or any(len(a) != len(q) or not set(a) <= {STUDENT, TEACHER} for a, q in zip(prefix_authors, prefixes))
  ):
    raise DecodeInputError(
      f"prefix_authors needs one {STUDENT} (student) or {TEACHER} (teacher) per prefix token"
    )
  full = [list(p) + q for p, q in zip(prompts, prefixes)]
  budgets = np.broadcast_to(np.asarray(max_new_tokens), (n,))
  worst = int(
    np.argmax([len(p) + int(m) for p, m in zip(prompts, budgets)])
  )  # the row needing most positions
  longest, new_tokens = len(prompts[worst]), int(budgets[worst])
  T = max_len or buffer_length(longest, new_tokens, bucket, max_context)  # checks the context either way
  if max_len:
    buffer_length(longest, new_tokens, bucket, max_context)
  if T < longest + new_tokens or max(len(f) for f in full) >= T:
    raise DecodeInputError(
      f"max_len={T} is too short for a prompt of {longest} tokens plus {new_tokens} new tokens"
    )
  B = batch_size or n
  if B < n:
    raise DecodeInputError(f"batch_size={B} is smaller than the {n} prompts given")

  def col(values, dtype, fill):
    """[B] column: one value per prompt (or a scalar for all), `fill` in padding rows."""
    arr = np.full((B,), fill, dtype)
    arr[:n] = np.broadcast_to(np.asarray(values, dtype), (n,))
    return arr

  tokens = np.zeros((B, T), np.int32)
  authors = np.full((B, T), PROMPT, np.int32)
  step_ids = np.zeros((B, T), np.int32)
  for i, (p, q) in enumerate(zip(prompts, prefixes)):
    tokens[i, : len(p) + len(q)] = list(p) + q
    authors[i, len(p) : len(p) + len(q)] = STUDENT if prefix_authors is None else prefix_authors[i]
    step_ids[i, len(p) : len(p) + len(q)] = prefix_step_ids(q, vocab)
  sampling = SamplingParams(
    seeds=col(seeds, np.int32, 0),
    temperature=col(temperature, np.float32, 0.0),
    top_k=col(top_k, np.int32, 0),
    top_p=col(top_p, np.float32, 1.0),
  )
  if not np.all(np.isfinite(sampling.temperature)) or np.any(sampling.temperature < 0):
    raise DecodeInputError("temperature must be finite and >= 0 (0 = greedy)")
  if not np.all((sampling.top_p > 0) & (sampling.top_p <= 1)):
    raise DecodeInputError("top_p must be in (0, 1] (1 = off)")
  if np.any(sampling.top_k < 0):
    raise DecodeInputError("top_k must be >= 0 (0 = off)")
  inputs = LoopInputs(
    prompts=Prompts(
      tokens=tokens,
      lengths=col([len(f) for f in full], np.int32, 1),
      authors=authors,
      step_ids=step_ids,
      start_steps=col(prefix_steps, np.int32, 0),
      gen_start=col([len(p) for p in prompts], np.int32, 0),
      stop_state=np.zeros((B,), np.int32) if vocab.stops is None else vocab.stops.start_states(prefixes, B),
    ),
    limits=RowLimits(
      max_new=col(max_new_tokens, np.int32, 1),
      max_steps=col(max_steps if max_steps is not None else NO_LIMIT, np.int32, 1),
      active=col(True, bool, False),
    ),
    sampling=sampling,
    policy=PolicyArrays.stack(policies + [parse_policy("never")] * (B - n)),
    vocab=vocab,
    cache_start=CacheStart(
      student_seen=np.zeros((B,), np.int32),
      teacher_seen=np.zeros((B,), np.int32),
      teacher_prefill=col(teacher_prefill, bool, False),
    ),
  )
  return inputs, T, B

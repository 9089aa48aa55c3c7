"""What the guided loop reads and carries: static facts, per-model bundles, inputs and state.

Every array is per row ([B, ...]) unless its comment says otherwise. Inputs and state are grouped
by meaning (gemma's `SamplingState`, t5x's split of model state from loop bookkeeping):

  LoopInputs  = Prompts (token buffers given) + RowLimits + SamplingParams + PolicyArrays
                + VocabMasks + CacheStart (what the given caches already hold)
  LoopState   = Buffers (tokens written so far) + StepState (who writes, step bookkeeping)
                + Counters (cost accounting) + CacheState (both KV caches, teacher's pointer)
"""

from __future__ import annotations

import dataclasses
from typing import Any

import flax.struct
import jax
import jax.numpy as jnp

from decode.core.policy import PolicyArrays
from decode.core.vocab import VocabMasks
from model.config import DecoderConfig
from model.kv_cache import KVCache

STUDENT, TEACHER = 0, 1
PROMPT = -1  # author id of prompt tokens; also "no token yet" in StepState.last_author


@dataclasses.dataclass(frozen=True)
class LoopConfig:
  """Static (compile-time) facts. Everything else is traced, so it never recompiles the loop."""

  max_len: int  # T: token buffer and cache length (prompt + new tokens, bucketed)
  vocab_size: int  # V: shared tokenizer size; logits are sliced to it
  prefill_chunk: int  # chunk of the student's prefill of the prompt (+ prefix)
  teacher_chunk: int  # chunk of the teacher's catch-up on tokens it has not read
  has_teacher: bool = True
  lockstep: bool = False  # naive baseline: teacher processes every token every iteration
  # Sub-batch sizes (< B) the teacher's forwards (one-token decode and chunked catch-up) may run on
  # when fewer rows need them; two compiled teacher forwards per size. Empty: always the whole batch.
  teacher_row_buckets: tuple[int, ...] = ()


@flax.struct.dataclass
class LoopModel:
  """One model as the loop sees it: params are traced; config and cache placement are static."""

  params: Any
  cfg: DecoderConfig = flax.struct.field(pytree_node=False)
  cache_sharding: Any = flax.struct.field(pytree_node=False, default=None)  # NamedSharding of [L, B, K, T, D]

  def placed(self, cache: KVCache) -> KVCache:
    """Pins a cache to this model's layout (rows over 'data', kv heads per its rules)."""
    if self.cache_sharding is None:
      return cache
    return jax.lax.with_sharding_constraint(cache, self.cache_sharding)


@flax.struct.dataclass
class Prompts:
  """The token buffers a call starts from: prompt (+ a forked student prefix), right-padded."""

  tokens: jax.Array  # [B, T] int32
  lengths: jax.Array  # [B] valid tokens in `tokens`
  authors: jax.Array  # [B, T] int32: PROMPT, or STUDENT for a prefix
  step_ids: jax.Array  # [B, T] int32: step of each given token (0 in the prompt)
  start_steps: jax.Array  # [B] steps already completed in the given prefix
  gen_start: jax.Array  # [B] where generation began (prompt length without prefix)
  stop_state: jax.Array  # [B] int32: the stop table's state after the given prefix (0: none)


@flax.struct.dataclass
class RowLimits:
  max_new: jax.Array  # [B] new-token limit, counted from gen_start
  max_steps: jax.Array  # [B] step limit
  active: jax.Array  # [B] bool; False for batch padding rows (never decoded)


@flax.struct.dataclass
class SamplingParams:
  seeds: jax.Array  # [B] int32 per-row sampling seed
  temperature: jax.Array  # [B] float32 (0 = greedy)
  top_k: jax.Array  # [B] int32 (0 = off)
  top_p: jax.Array  # [B] float32 (1 = off)


@flax.struct.dataclass
class CacheStart:
  """How much of each row the caches given with the call (LoopCaches) already hold (0: fresh)."""

  student_seen: jax.Array  # [B] int32: student cache holds positions < student_seen
  teacher_seen: jax.Array  # [B] int32
  teacher_prefill: jax.Array  # [B] bool: prefill the teacher on the whole prompt (+ prefix) up front


@flax.struct.dataclass
class LoopInputs:
  prompts: Prompts
  limits: RowLimits
  sampling: SamplingParams
  policy: PolicyArrays
  vocab: VocabMasks  # [V] bool masks
  cache_start: CacheStart


@flax.struct.dataclass
class LoopCaches:
  """The caches a loop call starts from (donated to it): zeros, or rows of an earlier call's."""

  student: KVCache
  teacher: KVCache | None


@flax.struct.dataclass
class Buffers:
  tokens: jax.Array  # [B, T] int32
  authors: jax.Array  # [B, T] int32: PROMPT / STUDENT / TEACHER
  step_ids: jax.Array  # [B, T] int32: 1-based step of each generated token
  length: jax.Array  # [B] valid tokens in the buffer
  # [B, T, 3] float32: the student's (entropy, max prob, margin) before the first token of each
  # step, where computed (`never` rows and trigger rows); NaN elsewhere. Calibrates `q=` triggers.
  step_metrics: jax.Array


@flax.struct.dataclass
class StepState:
  done: jax.Array  # [B] bool
  writer: jax.Array  # [B] who writes the current step
  at_step_start: jax.Array  # [B] bool: the next token starts a new step
  step_has_content: jax.Array  # [B] bool: current step has a non-whitespace token
  steps_done: jax.Array  # [B]
  step_teacher_tokens: jax.Array  # [B] teacher tokens written in the current step (hint limit)
  triggered: jax.Array  # [B] steps given to the teacher by a trigger (budget)
  last_author: jax.Array  # [B] author of the previous generated token (PROMPT: none)
  nonfinite_at: jax.Array  # [B] position where the row's logits were not finite and it stopped (-1: never)
  stop_state: jax.Array  # [B] int32: state of the stop table (VocabMasks.stops) after the row's text


@flax.struct.dataclass
class Counters:
  student_tokens: jax.Array  # [B]
  teacher_tokens: jax.Array  # [B] written by the teacher
  # [B] tokens the teacher's forward processed in this call (catch-up + decode); positions held by
  # given caches were processed by the call that made them.
  teacher_forwarded: jax.Array
  switches: jax.Array  # [B] changes of author between consecutive generated tokens
  teacher_calls: jax.Array  # [] iterations in which the teacher's forward ran
  iterations: jax.Array  # []


@flax.struct.dataclass
class CacheState:
  student: KVCache  # holds positions < length - 1 (the last token is fed next)
  teacher: KVCache | None
  teacher_seen: jax.Array  # [B] teacher cache holds positions < teacher_seen


@flax.struct.dataclass
class TokenChoice:
  """What an iteration chose for each row, for `advance` to write."""

  token: jax.Array  # [B] int32
  writer: jax.Array  # [B] int32: STUDENT / TEACHER
  fired: jax.Array  # [B] bool: a trigger gave this step to the teacher at this token
  finite: jax.Array  # [B] bool: the writer's logits were finite (a row that was not stops)
  step_metrics: jax.Array  # [B, 3] the student's uncertainty at this token (NaN: not recorded)


@flax.struct.dataclass
class ForwardsDone:
  """The iteration's forwards: both caches after them, and the teacher's counters."""

  caches: CacheState
  teacher_forwarded: jax.Array  # [B] counter after this iteration's teacher forward
  teacher_calls: jax.Array  # [] counter after this iteration


@flax.struct.dataclass
class LoopState:
  buffers: Buffers
  step: StepState
  counters: Counters
  caches: CacheState


def zeros_i32(b: int) -> jax.Array:
  return jnp.zeros((b,), jnp.int32)

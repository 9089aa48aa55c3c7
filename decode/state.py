"""The guided loop's state and inputs: one dataclass each, every field per row unless noted."""
from __future__ import annotations

import dataclasses
from typing import Any

import flax.struct
import jax
import jax.numpy as jnp

from decode.policy import PolicyArrays
from model.kv_cache import KVCache

STUDENT, TEACHER = 0, 1
PROMPT = -1  # author id of prompt tokens


@dataclasses.dataclass(frozen=True)
class LoopConfig:
  """Static (compile-time) facts. Everything else is traced, so it never recompiles the loop."""

  max_len: int           # T: token buffer and cache length (prompt + new tokens, bucketed)
  vocab_size: int        # V: shared tokenizer size; logits are sliced to it
  prefill_chunk: int = 64  # chunk of the student's prompt prefill
  teacher_chunk: int = 32  # chunk of the teacher's lazy catch-up
  has_teacher: bool = True
  lockstep: bool = False   # naive baseline: teacher processes every token every iteration
  # Sub-batch sizes (< B) the teacher's forwards (one-token decode and chunked catch-up) may run on
  # when fewer rows need them; two compiled teacher forwards per size. Empty: always the whole batch.
  teacher_row_buckets: tuple[int, ...] = ()
  student_cache_sharding: Any = None  # NamedSharding of a [B, K, T, D] cache array, or None
  teacher_cache_sharding: Any = None


@flax.struct.dataclass
class LoopInputs:
  tokens: jax.Array        # [B, T] int32 prompt (+ forked prefix), right-padded
  lengths: jax.Array       # [B] valid tokens in `tokens`
  authors: jax.Array       # [B, T] int32 author of each given token (PROMPT, or STUDENT for a prefix)
  step_ids: jax.Array      # [B, T] int32 step of each given token (0 in the prompt)
  start_steps: jax.Array   # [B] steps already completed in the given prefix
  gen_start: jax.Array     # [B] where generation began (prompt length without prefix)
  max_new: jax.Array       # [B] new-token limit, counted from gen_start
  max_steps: jax.Array     # [B] step limit
  active: jax.Array        # [B] bool; False for batch padding rows (never decoded)
  seeds: jax.Array         # [B] int32 per-row sampling seed
  temperature: jax.Array   # [B] float32
  top_k: jax.Array         # [B] int32 (0 = off)
  top_p: jax.Array         # [B] float32 (1 = off)
  policy: PolicyArrays
  delimiter_mask: jax.Array  # [V] bool
  content_mask: jax.Array    # [V] bool
  eos_mask: jax.Array        # [V] bool
  # Caches given with the call (LoopCaches) already hold positions < *_seen of each row (0: fresh).
  student_seen: jax.Array    # [B] int32
  teacher_seen: jax.Array    # [B] int32
  teacher_prefill: jax.Array  # [B] bool: catch the teacher up on the whole prompt (+ prefix) before decoding


@flax.struct.dataclass
class LoopCaches:
  """The caches a loop call starts from (donated to it): zeros, or rows of an earlier call's."""

  student: KVCache
  teacher: KVCache | None


@flax.struct.dataclass
class LoopState:
  tokens: jax.Array          # [B, T] int32
  authors: jax.Array         # [B, T] int32: PROMPT / STUDENT / TEACHER
  step_ids: jax.Array        # [B, T] int32: 1-based step of each generated token
  length: jax.Array          # [B] valid tokens in the buffer
  done: jax.Array            # [B] bool
  student_cache: KVCache     # holds positions < length - 1 (the last token is fed next)
  teacher_cache: KVCache | None
  teacher_seen: jax.Array    # [B] teacher cache holds positions < teacher_seen
  writer: jax.Array          # [B] who writes the current step
  at_step_start: jax.Array   # [B] bool: the next token starts a new step
  step_has_content: jax.Array  # [B] bool: current step has a non-whitespace token
  steps_done: jax.Array      # [B]
  step_teacher_tokens: jax.Array  # [B] teacher tokens written in the current step (hint limit)
  triggered: jax.Array       # [B] steps given to the teacher by a trigger (budget)
  last_author: jax.Array     # [B] author of the previous generated token (-1 none)
  student_tokens: jax.Array  # [B]
  teacher_tokens: jax.Array  # [B] written by the teacher
  teacher_prefilled: jax.Array  # [B] tokens the teacher's forward processed in this call (catch-up + decode;
  #                               positions held by given caches were processed by the call that made them)
  switches: jax.Array        # [B] changes of author between consecutive generated tokens
  teacher_calls: jax.Array   # [] iterations in which the teacher's forward ran
  iterations: jax.Array      # []


def zeros_i32(b: int) -> jax.Array:
  return jnp.zeros((b,), jnp.int32)

"""How the loop runs, as opposed to what it decodes: the one home of the decoding defaults.

Plain data with no JAX import, so configs (configs/base.py) read their defaults from here.
"""

from __future__ import annotations

import dataclasses

from decode.core.stop_rule import StopRule


@dataclasses.dataclass(frozen=True)
class DecodeOptions:
  """How the loop runs (not what it decodes): the one home of these defaults (configs/base.py reads them)."""

  step_delimiter: str = "\n"  # text that ends a reasoning step
  teacher_chunk: int = 32  # tokens per forward of the teacher's catch-up
  prefill_chunk: int = 64  # tokens per forward of the student's prefill
  length_bucket: int = 64  # buffer length T is rounded up to a multiple of this
  teacher_sub_batches: int = 3  # teacher forwards on B/2, B/4, B/8 rows when fewer need it (0 = off)
  lockstep: bool = False  # naive baseline: the teacher reads every token (benchmarks only)
  min_shared_prefix: int = 16  # shortest common prompt prefix worth prefilling once (shared_prefix)
  stop: StopRule = StopRule()  # when a row's answer is complete (default: rows run to EOS or a limit)


@dataclasses.dataclass(frozen=True)
class ServedTeacherOptions:
  """How a teacher behind an OpenAI-compatible server is asked (decode.serving.client.ServedTeacher):
  the one home of these defaults (decode.generate's flags and configs/base.py read them)."""

  timeout_s: float = 120.0  # per request
  retries: int = 3  # of a request that may pass (no connection, a timeout, 429, 5xx)
  api: str = "completions"  # or "chat": one user message, `chat_template` filled
  # The chat teacher's message: the problem (the student's prompt, few-shot exemplars included) and
  # the solution so far, asking for the next step only (the paper prompted its GPT teachers with the
  # question and the steps so far).
  chat_template: str = (
    "Here is a math problem and the start of a step-by-step solution, one step per line.\n\n"
    "Problem:\n{problem}\n\nSolution so far:\n{solution}\n\n"
    "Write only the next step of the solution, as one line, with nothing before or after it."
  )

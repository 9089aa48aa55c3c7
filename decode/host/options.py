"""How the loop runs, as opposed to what it decodes: the one home of the decoding defaults.

Plain data with no JAX import, so configs (configs/base.py) read their defaults from here.
"""

from __future__ import annotations

import dataclasses


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

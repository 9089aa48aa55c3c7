"""Logical axis -> mesh axis tables. Data, not code: pick one per model in a config.

Mesh axes are 'data' (rows of a sweep) and 'model' (tensor parallelism).
"""

# Everything replicated except the batch: the cheap student on every device.
REPLICATED = (
  ("layers", None),  # the stacked layer axis of scanned params and caches: never split
  ("batch", "data"),
  ("vocab", None),
  ("embed", None),
  ("heads", None),
  ("kv_heads", None),
  ("mlp", None),
  ("norm", None),
  ("length", None),
  ("head_dim", None),
)

# Megatron-style tensor parallelism over 'model': heads, kv heads, MLP and vocab split.
TENSOR_PARALLEL = (
  ("layers", None),
  ("batch", "data"),
  ("vocab", "model"),
  ("embed", None),
  ("heads", "model"),
  ("kv_heads", "model"),
  ("mlp", "model"),
  ("norm", None),
  ("length", None),
  ("head_dim", None),
)

RULES = {"replicated": REPLICATED, "tensor_parallel": TENSOR_PARALLEL}


def get_rules(name: str):
  if name not in RULES:
    from model.sharding import MeshError

    raise MeshError(f"unknown sharding rules {name!r}; choose one of {sorted(RULES)}")
  return RULES[name]

"""Benchmark section `pod`: the paper's 7B + 70B pairing planned for 16 devices before a pod is booked.

`python -m experiments.plan` runs in a fresh process (16 fake CPU devices need XLA_FLAGS before jax
starts) on the public config.json of LLaMA-2-7B and LLaMA-2-70B (experiments/plan/pairings.py),
both tensor-parallel over model=16, batch 32, 1024 tokens, bfloat16: it compiles the guided loop
from abstract shapes and reads the program's memory. Beside it, the arithmetic a person would do
(both models' weights / 16 + both KV caches / 16, parameter counts from the LLaMA formula) and the
same plan with a replicated student, which must not fit 16 GiB. Tiny preset: toy widths on 4 devices.

Metrics (BENCHMARKS.md): pod_compile_s; pod_plan_vs_arithmetic (|plan / arithmetic - 1|, target
<= 0.15).
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

from experiments.bench.models import log
from experiments.plan.pairings import CONFIGS, write_config_dir
from experiments.plan.runbook import plan_json

TARGETS = {"pod_plan_vs_arithmetic": ("<=", 0.15)}
GIB = 2**30
DEVICES, BATCH, MAX_LEN, HBM_GIB = 16, 32, 1024, 16.0

# Smoke-test widths (preset tiny): a 70B-shaped toy (kv heads that model=16 does not divide).
TINY = {
  "tiny-student": dict(CONFIGS["llama-2-7b"], hidden_size=256, intermediate_size=512, num_hidden_layers=2),
  "tiny-teacher": dict(
    CONFIGS["llama-2-70b"],
    hidden_size=512,
    intermediate_size=1024,
    num_hidden_layers=4,
    num_attention_heads=16,
  ),
}


def bench_pod(preset_name: str, result: dict) -> None:
  tiny = preset_name == "tiny"
  configs = TINY if tiny else {k: CONFIGS[k] for k in ("llama-2-7b", "llama-2-70b")}
  batch, max_len, devices = (16, 64, 4) if tiny else (BATCH, MAX_LEN, DEVICES)
  with tempfile.TemporaryDirectory(prefix="bench_pod_") as root:
    student, teacher = (_config_dir(root, name, cfg) for name, cfg in configs.items())
    log(f"pod: compiling {student.name} + {teacher.name} on {devices} fake devices")
    plan = plan_json(student, teacher, devices, HBM_GIB, batch, max_len)
    replicated = plan_json(student, teacher, devices, HBM_GIB, batch, max_len, "replicated", compile=False)
  arith = {
    name: arithmetic_bytes(cfg, batch, max_len, devices)
    for name, cfg in zip(("student", "teacher"), configs.values())
  }
  arith_gib = sum(w + c for w, c in arith.values()) / GIB
  result["pod_pairing"] = f"{student.name} + {teacher.name}"
  result["pod_shape"] = dict(
    devices=devices, mesh=plan["mesh"], batch=batch, max_len=max_len, dtype="bfloat16"
  )
  result["pod_compile_s"] = plan["compile_s"]
  result["pod_plan"] = {k: plan[k] for k in _PLAN_KEYS}
  result["pod_arithmetic"] = {
    "weights_gib": sum(w for w, _ in arith.values()) / GIB,
    "student_cache_gib": arith["student"][1] / GIB,
    "teacher_cache_gib": arith["teacher"][1] / GIB,
    "per_device_gib": arith_gib,
  }
  result["pod_plan_vs_arithmetic"] = abs(plan["per_device_gib"] / arith_gib - 1)
  result["pod_replicated_student_gib"] = replicated["per_device_gib"]
  result["pod_replicated_student_fits"] = replicated["fits"]
  log(
    f"pod: plan {plan['per_device_gib']:.2f} GiB per device (fits {plan['fits']}), arithmetic "
    f"{arith_gib:.2f} GiB, compile {plan['compile_s']:.1f} s; replicated student "
    f"{replicated['per_device_gib']:.2f} GiB (fits {replicated['fits']})"
  )


_PLAN_KEYS = (
  "weights_gib",
  "student_cache_gib",
  "teacher_cache_gib",
  "temporaries_gib",
  "loop_state_gib",
  "per_device_gib",
  "fits",
  "teacher_cache_spec",
)


def _config_dir(root: str, name: str, cfg: dict) -> Path:
  if name in CONFIGS:
    return write_config_dir(root, name)
  d = Path(root) / name
  d.mkdir()
  (d / "config.json").write_text(json.dumps(cfg))
  return d


def arithmetic_bytes(cfg: dict, batch: int, max_len: int, devices: int = DEVICES) -> tuple[int, int]:
  """(weights, KV cache) bytes per device in bfloat16, everything split evenly over `devices`.

  LLaMA layout: embeddings and lm_head, per layer q/k/v/o, gate/up/down and two norms, a final norm.
  """
  E, L, V, F = cfg["hidden_size"], cfg["num_hidden_layers"], cfg["vocab_size"], cfg["intermediate_size"]
  N, K = cfg["num_attention_heads"], cfg["num_key_value_heads"]
  D = cfg.get("head_dim") or E // N
  params = 2 * V * E + E + L * (2 * E * N * D + 2 * E * K * D + 3 * E * F + 2 * E)
  cache = 2 * L * batch * K * max_len * D  # keys and values
  return 2 * params // devices, 2 * cache // devices

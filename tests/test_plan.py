"""`python -m experiments.plan`: will a pairing fit, decided from config.json files alone.

The real-size pairing (LLaMA-2-7B student, LLaMA-2-70B teacher on 16 devices) is planned by
arithmetic (--no-compile): compiling its program on 16 fake CPU devices takes ~30 s. The compile
path runs on a tiny pairing whose kv heads the 'model' axis does not divide either.
"""

import json
import os
import subprocess
import sys

import pytest
import tiny_models
from jax.sharding import PartitionSpec as P

from configs.sharding_rules import REPLICATED, TENSOR_PARALLEL
from experiments.plan.pairings import PAIRINGS, write_config_dir
from model.errors import UserError
from model.kv_cache import CACHE_AXES
from model.sharding import partition_spec

LLAMA_7B = dict(hidden_size=4096, num_hidden_layers=32, num_attention_heads=32, num_key_value_heads=32)
LLAMA_70B = dict(hidden_size=8192, num_hidden_layers=80, num_attention_heads=64, num_key_value_heads=8)
SIZES = {"7b": dict(LLAMA_7B, intermediate_size=11008), "70b": dict(LLAMA_70B, intermediate_size=28672)}
GIB = 2**30


@pytest.fixture(scope="module")
def llama_dirs(tmp_path_factory):
  """Directories holding only the config.json of LLaMA-2-7B and LLaMA-2-70B (real hyperparameters)."""
  from transformers import LlamaConfig

  root = tmp_path_factory.mktemp("llama2")
  for name, sizes in SIZES.items():
    LlamaConfig(vocab_size=32000, max_position_embeddings=4096, **sizes).save_pretrained(root / name)
  return root


def _flags(d, student_rules="tensor_parallel", devices=16, model=16, *extra):
  return [
    *("--student", str(d / "7b"), "--teacher", str(d / "70b"), "--devices", str(devices)),
    *("--mesh-data", "1", "--mesh-model", str(model), "--student-rules", student_rules),
    *("--teacher-rules", "tensor_parallel", "--batch-size", "32", "--max-len", "1024"),
    *("--dtype", "bfloat16", "--hbm-gib", "16", "--no-compile", *extra),
  ]


def _plan(flags):
  from experiments.plan.cli import parse
  from experiments.plan.report import summary
  from experiments.plan.run import make_plan

  return summary(make_plan(parse(flags)))


def _llama_params(
  hidden_size, num_hidden_layers, num_attention_heads, num_key_value_heads, intermediate_size
):
  E, L, F, V = hidden_size, num_hidden_layers, intermediate_size, 32000
  D = E // num_attention_heads
  attn = 2 * E * num_attention_heads * D + 2 * E * num_key_value_heads * D  # q, o; k, v
  return 2 * V * E + E + L * (attn + 3 * E * F + 2 * E)  # embed + lm_head + final norm; blocks


def _cache_bytes(sizes, batch=32, length=1024):
  D = sizes["hidden_size"] // sizes["num_attention_heads"]
  return 2 * sizes["num_hidden_layers"] * batch * sizes["num_key_value_heads"] * length * D * 2  # k+v, bf16


def test_kv_heads_the_model_axis_does_not_divide_split_head_dim_instead():
  tp, mesh = TENSOR_PARALLEL, {"data": 1, "model": 16}
  assert partition_spec(CACHE_AXES, (80, 32, 8, 1024, 128), mesh, tp) == P(None, "data", None, None, "model")
  # heads that divide keep their layout; replicated rules stay replicated
  assert partition_spec(CACHE_AXES, (32, 32, 32, 1024, 128), mesh, tp) == P(None, "data", "model", None, None)
  assert partition_spec(CACHE_AXES, (80, 32, 8, 1024, 128), mesh, REPLICATED) == P(
    None, "data", None, None, None
  )
  # then the length; with nothing the axis divides, replicated along it (never an error)
  assert partition_spec(CACHE_AXES, (2, 8, 2, 65, 12), {"data": 2, "model": 5}, tp) == P(
    None, "data", None, "model", None
  )
  assert partition_spec(CACHE_AXES, (2, 8, 2, 64, 12), {"data": 2, "model": 5}, tp) == P(
    None, "data", None, None, None
  )
  # params are placed as before: k/v kernels [L, E, K * D] split where K * D divides
  assert partition_spec(("layers", "embed", "kv_heads"), (80, 8192, 1024), mesh, tp) == P(None, None, "model")


def test_llama_7b_and_70b_fit_16_devices_as_the_arithmetic_says(llama_dirs):
  plan = _plan(_flags(llama_dirs))
  s, t = SIZES["7b"], SIZES["70b"]
  assert plan["student_params"] == _llama_params(**s) and plan["teacher_params"] == _llama_params(**t)
  weights = (_llama_params(**s) + _llama_params(**t)) * 2 / 16  # bf16 over 16 devices
  caches = (_cache_bytes(s) + _cache_bytes(t)) / 16
  assert plan["weights_gib"] == pytest.approx(weights / GIB, rel=0.02)
  assert plan["per_device_gib"] == pytest.approx((weights + caches) / GIB, rel=0.15)
  assert plan["fits"] and plan["per_device_gib"] < 16 and plan["suggestions"] == []
  # the 70B's 8 kv heads over 16 devices: its cache split along head_dim, not replicated (~10 GiB)
  assert plan["teacher_cache_spec"] == str(P(None, "data", None, None, "model"))
  assert plan["teacher_cache_gib"] == pytest.approx(_cache_bytes(t) / 16 / GIB)
  assert plan["teacher_step_ms"] > plan["student_step_ms"] > 0


def test_a_replicated_student_does_not_fit_and_the_plan_says_what_would(llama_dirs):
  plan = _plan(_flags(llama_dirs, "replicated"))
  assert not plan["fits"] and plan["per_device_gib"] > 16
  assert plan["student_weights_gib"] == pytest.approx(_llama_params(**SIZES["7b"]) * 2 / GIB, rel=1e-6)
  assert any("--student-rules tensor_parallel" in s for s in plan["suggestions"]), plan["suggestions"]
  fewer = _plan(_flags(llama_dirs, "tensor_parallel", 8, 8))  # the 70B's weights alone: 16 GiB on 8
  assert not fewer["fits"]
  assert any("--devices 16 --mesh-model 16" in s for s in fewer["suggestions"]), fewer["suggestions"]


def test_cli_prints_per_device_lines_and_json_last(llama_dirs):
  env = dict(os.environ, JAX_PLATFORMS="cpu")
  r = subprocess.run(
    [sys.executable, "-m", "experiments.plan", *_flags(llama_dirs, "replicated")],
    capture_output=True,
    text=True,
    env=env,
  )
  assert r.returncode == 0, r.stderr[-2000:]
  lines = r.stdout.strip().splitlines()
  last = json.loads(lines[-1])
  assert {"weights_gib", "per_device_gib", "fits"} <= last.keys() and last["fits"] is False
  text = "\n".join(lines[:-1])
  for word in (
    "weights",
    "KV caches",
    "temporaries",
    "total",
    "does not fit",
    "roofline",
    "shard the student",
  ):
    assert word in text, text
  assert "8 kv heads do not divide model=16: head_dim split instead" in text


def test_cli_compiles_the_loop_on_fake_devices(tmp_path):
  """A tiny pairing compiled on 8 fake devices: temporaries from the compiled program, on top of the
  arithmetic's weights and caches (which the compiled program's arguments agree with)."""
  tiny_models.hf_config("llama", max_position_embeddings=512).save_pretrained(tmp_path / "s")
  teacher = dict(hidden_size=48, num_hidden_layers=3, max_position_embeddings=512)
  tiny_models.hf_config("qwen2", **teacher).save_pretrained(tmp_path / "t")
  flags = [
    *("--student", str(tmp_path / "s"), "--teacher", str(tmp_path / "t"), "--devices", "8"),
    *("--mesh-data", "2", "--mesh-model", "4", "--batch-size", "5", "--max-len", "128"),
    *("--dtype", "bfloat16", "--hbm-gib", "1"),
  ]
  env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}
  r = subprocess.run(
    [sys.executable, "-m", "experiments.plan", *flags], capture_output=True, text=True, env=env
  )
  assert r.returncode == 0, r.stderr[-3000:]
  out = json.loads(r.stdout.strip().splitlines()[-1])
  assert out["compiled"] and out["compile_s"] > 0 and out["fits"]
  assert out["batch_size"] == 6  # rounded up to a multiple of data, as sweeps pad
  assert out["teacher_cache_spec"] == str(P(None, "data", None, None, "model"))  # 2 kv heads, model=4
  parts = ("weights_gib", "student_cache_gib", "teacher_cache_gib", "temporaries_gib", "loop_state_gib")
  assert out["temporaries_gib"] > 0 and out["loop_state_gib"] >= 0
  assert out["per_device_gib"] == pytest.approx(sum(out[k] for k in parts), abs=1e-5)
  assert "temporaries" in r.stdout and "compile:" in r.stdout and "Traceback" not in r.stderr


@pytest.mark.parametrize(
  "change, message",
  [
    ({"--devices": "12"}, "needs 16 devices but 12 are available"),
    ({"--max-len": "8192"}, "exceeds the models' context of 4096"),
    ({"--student-rules": "sharded"}, "--student-rules: unknown sharding rules 'sharded'"),
    ({"--batch-size": "0"}, "--batch-size must be at least 1"),
    ({"--dtype": "int8"}, "argument --dtype: invalid choice"),
  ],
)
def test_bad_input_is_a_user_error_naming_the_fix(llama_dirs, change, message):
  flags = _flags(llama_dirs)
  for flag, value in change.items():
    flags[flags.index(flag) + 1] = value
  with pytest.raises(UserError, match=message.replace("(", r"\(")):
    _plan(flags)


def test_cli_bad_input_is_one_line_and_exit_2(tmp_path, llama_dirs):
  flags = _flags(llama_dirs)
  flags[flags.index("--teacher") + 1] = str(tmp_path / "missing")
  r = subprocess.run([sys.executable, "-m", "experiments.plan", *flags], capture_output=True, text=True)
  assert r.returncode == 2 and r.stdout == ""
  assert r.stderr.startswith("error: ") and len(r.stderr.strip().splitlines()) == 1, r.stderr
  assert "missing" in r.stderr and "does not exist" in r.stderr


# Parameter counts the models' own repositories report (safetensors metadata / model cards).
PUBLISHED_PARAMS = {
  "llama-2-7b": 6_738_415_616,
  "llama-2-70b": 68_976_648_192,
  "gemma-7b": 8_537_680_896,
  "olmo-7b": 6_888_095_744,
}


@pytest.mark.parametrize("student, teacher", PAIRINGS)
def test_the_runbook_pairings_plan_from_their_public_configs(tmp_path, student, teacher):
  """The runbook's configs (experiments/plan/pairings.py) are the published models: same param counts."""
  d = _flags(tmp_path)  # the LLaMA-2 shape and mesh, these configs in place of the test's
  d[d.index("--student") + 1] = str(write_config_dir(tmp_path, student))
  d[d.index("--teacher") + 1] = str(write_config_dir(tmp_path, teacher))
  plan = _plan(d)
  assert plan["student_params"] == PUBLISHED_PARAMS[student]
  assert plan["teacher_params"] == PUBLISHED_PARAMS[teacher]
  assert plan["fits"]  # each student beside the 70B fits v5e-16's 16 GiB chips, both tensor-parallel

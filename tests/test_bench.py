"""Smoke test of experiments/bench.py at tiny sizes: every section runs, the JSON contract holds.

No timing assertions (this is not a benchmark); only shapes of the output and exact facts: one
compile per sweep, equal token counts, fork == separate, and greedy parity with HF generate.
"""

import json

import pytest

from experiments.bench import models as bench_models
from experiments.bench import run as bench


def test_tokenizer_has_steps_and_roundtrips(tmp_path):
  tok = bench_models.make_tokenizer([tmp_path], vocab_size=64, delimiter_every=5)
  ids = bench_models.random_prompts(3, 12, 64, seed=0)
  for row in ids:
    assert tok(tok.decode(row), add_special_tokens=True)["input_ids"] == row
  assert tok.eos_token_id == bench_models.EOS_ID
  from decode.core.vocab import build_masks

  masks = build_masks(tok)
  assert masks.delimiter.sum() == len([i for i in range(4, 64) if i % 5 == 0])
  assert masks.content[4:].all() and not masks.content[:4].any()


def test_tiny_benchmark_json(capsys):
  bench.main(["--size", "tiny"])
  last = capsys.readouterr().out.strip().splitlines()[-1]
  result = json.loads(last)  # the LAST stdout line is the JSON object
  for key in bench.REQUIRED_KEYS + (
    "ours_b1_tokens_per_s",
    "hf_b1_tokens_per_s",
    "ours_b16_tokens_per_s",
    "hf_b16_tokens_per_s",
    "device",
    "jax_version",
    "torch_version",
    "command",
    "threads",
    "hf_orchestration_rows_timed",
    "meets_target",
  ):
    assert key in result, key
  assert result["compiles_per_sweep"] == 1
  assert result["compiles_during_timed_sweeps"] == 0
  assert result["compiles_during_timing_b1"] == 0 and result["compiles_during_timing_b16"] == 0
  assert result["guided_recompiled_during_timing"] is False
  assert result["sweep_fork_equals_separate"] is True
  assert result["bridge_fork_equals_plain"] is True and result["bridge_cache_rows_equal"] is True
  assert result["bridge_teacher_read_ratio"] < 1  # the teacher's row caches: fewer tokens read
  assert result["guided_lockstep_outputs_equal_lazy"] is True
  assert result["greedy_match_b1"] is True
  assert result["guided_teacher_calls"]["never"] == 0
  for name in bench.TARGETS:
    assert isinstance(result[name], (int, float)) and result[name] > 0, name
  # load: our loader (safetensors, GGUF) and transformers side by side, each in a fresh process
  assert set(result["load_runs"]) == {"ours_float32", "transformers_float32", "ours_gguf_float32"}
  assert len({r["params_gib"] for r in result["load_runs"].values()}) == 1  # the same model, whichever loader
  for r in result["load_runs"].values():
    assert r["seconds"] > 0 and r["peak_rss_gib"] >= r["load_rss_gib"] >= 0
  # pod: the plan against the arithmetic (tests/test_bench_load_pod.py checks the formula)
  plan, arith = result["pod_plan"], result["pod_arithmetic"]
  assert result["pod_compile_s"] > 0 and plan["fits"]
  assert plan["weights_gib"] == pytest.approx(arith["weights_gib"], rel=0.05)  # norms replicated
  assert plan["teacher_cache_gib"] == pytest.approx(arith["teacher_cache_gib"], rel=1e-3)  # JSON: 6 places
  assert result["pod_replicated_student_gib"] > plan["per_device_gib"] - plan["temporaries_gib"]
  assert result["fused_projections"] is True and result["layer_params"] == "per_layer"  # the CPU default
  assert result["matvec_slices"] == 4  # one-row dots over slices: the default on one CPU device

"""The paper's model pairings and the pods they may run on, as data: the numbers of README's runbook.

Each model is the public config.json of its Hugging Face repository (the fields a plan reads),
so `python -m experiments.plan.runbook` reproduces the runbook's table without downloading
anything; `write_config_dir` writes one as a directory holding only config.json.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

# config.json of meta-llama/Llama-2-7b-hf, meta-llama/Llama-2-70b-hf, google/gemma-7b, allenai/OLMo-7B-hf.
CONFIGS: dict[str, dict] = {
  "llama-2-7b": {
    "architectures": ["LlamaForCausalLM"],
    "model_type": "llama",
    "hidden_size": 4096,
    "intermediate_size": 11008,
    "num_hidden_layers": 32,
    "num_attention_heads": 32,
    "num_key_value_heads": 32,
    "max_position_embeddings": 4096,
    "rms_norm_eps": 1e-05,
    "hidden_act": "silu",
    "vocab_size": 32000,
    "bos_token_id": 1,
    "eos_token_id": 2,
    "tie_word_embeddings": False,
  },
  "llama-2-70b": {
    "architectures": ["LlamaForCausalLM"],
    "model_type": "llama",
    "hidden_size": 8192,
    "intermediate_size": 28672,
    "num_hidden_layers": 80,
    "num_attention_heads": 64,
    "num_key_value_heads": 8,
    "max_position_embeddings": 4096,
    "rms_norm_eps": 1e-05,
    "hidden_act": "silu",
    "vocab_size": 32000,
    "bos_token_id": 1,
    "eos_token_id": 2,
    "tie_word_embeddings": False,
  },
  "gemma-7b": {
    "architectures": ["GemmaForCausalLM"],
    "model_type": "gemma",
    "hidden_size": 3072,
    "intermediate_size": 24576,
    "num_hidden_layers": 28,
    "num_attention_heads": 16,
    "num_key_value_heads": 16,
    "head_dim": 256,
    "max_position_embeddings": 8192,
    "rms_norm_eps": 1e-06,
    "rope_theta": 10000.0,
    "hidden_act": "gelu",
    "vocab_size": 256000,
    "bos_token_id": 2,
    "eos_token_id": 1,
    "pad_token_id": 0,
  },
  "olmo-7b": {
    "architectures": ["OlmoForCausalLM"],
    "model_type": "olmo",
    "hidden_size": 4096,
    "intermediate_size": 11008,
    "num_hidden_layers": 32,
    "num_attention_heads": 32,
    "num_key_value_heads": 32,
    "max_position_embeddings": 2048,
    "rope_theta": 10000.0,
    "hidden_act": "silu",
    "vocab_size": 50304,
    "eos_token_id": 50279,
    "pad_token_id": 1,
    "tie_word_embeddings": False,
  },
}

# (student, teacher): the paper's students, each guided by LLaMA-2-70B.
PAIRINGS: tuple[tuple[str, str], ...] = (
  ("llama-2-7b", "llama-2-70b"),
  ("gemma-7b", "llama-2-70b"),
  ("olmo-7b", "llama-2-70b"),
)


@dataclasses.dataclass(frozen=True)
class Pod:
  """A pod slice: its chips, one chip's memory and bandwidth, and how many chips one host has."""

  name: str
  devices: int
  hbm_gib: float
  hbm_gbps: float
  devices_per_host: int


PODS: tuple[Pod, ...] = (
  Pod("TPU v5e-16", devices=16, hbm_gib=16.0, hbm_gbps=819.0, devices_per_host=4),  # 4 hosts x 4 chips
  Pod("TPU v5p-8", devices=4, hbm_gib=95.0, hbm_gbps=2765.0, devices_per_host=4),  # one host, 4 chips
  Pod("8 x H100 80GB", devices=8, hbm_gib=79.6, hbm_gbps=3350.0, devices_per_host=8),  # SXM, one host
)


def write_config_dir(root: str | Path, name: str) -> Path:
  """root/name/config.json holding CONFIGS[name]: what a plan reads (no weights, no tokenizer)."""
  d = Path(root) / name
  d.mkdir(parents=True, exist_ok=True)
  (d / "config.json").write_text(json.dumps(CONFIGS[name], indent=2) + "\n")
  return d

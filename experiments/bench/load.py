"""Benchmark section `load`: loading a real-size model, ours beside transformers' `from_pretrained`.

A random model of a real Qwen2.5 width (0.5B in the quick preset, 1.5B in full; a toy in tiny) is
written as transformers saves it (config.json + model.safetensors) and as llama.cpp writes it (a
.gguf, float32), a tensor at a time so the writer never holds the model. Each load runs in a fresh
process: the time of the load call alone (imports and backend start excluded, both sides) and the
peak resident memory it adds (VmHWM reset after the imports through /proc/self/clear_refs, so the
peak is the load's own, with the imports' resident memory reported apart). Float32 and bfloat16.

Metrics (BENCHMARKS.md): load_rss_over_params (the load's peak over the params it holds, our
safetensors loads, worst dtype; target <= 1.3) and load_time_vs_hf (our safetensors load time over
from_pretrained's, worst dtype; target <= 3); reported beside them: load_gguf_rss_over_params (a
GGUF holds one dequantised float32 tensor at a time on top: the embedding, for a tied model with a
large vocabulary) and load_hf_rss_over_params (from_pretrained's own; below 1 where it leaves
float32 params memory-mapped, untouched).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

from experiments.bench.models import log

TARGETS = {"load_rss_over_params": ("<=", 1.3), "load_time_vs_hf": ("<=", 3.0)}

# Qwen2.5 widths (config.json of Qwen/Qwen2.5-0.5B and a 1.5B with its own lm_head, 7.1 GB in float32).
WIDTHS = {
  "qwen2.5-0.5b": dict(
    hidden_size=896,
    num_attention_heads=14,
    num_key_value_heads=2,
    intermediate_size=4864,
    num_hidden_layers=24,
    vocab_size=151_936,
    tie_word_embeddings=True,
  ),
  "qwen2.5-1.5b": dict(
    hidden_size=1536,
    num_attention_heads=12,
    num_key_value_heads=2,
    intermediate_size=8960,
    num_hidden_layers=28,
    vocab_size=151_936,
    tie_word_embeddings=False,
  ),
  "tiny": dict(
    hidden_size=64,
    num_attention_heads=4,
    num_key_value_heads=2,
    intermediate_size=256,
    num_hidden_layers=4,
    vocab_size=1024,
    tie_word_embeddings=False,
  ),
}
MODEL_FOR_PRESET = {"full": "qwen2.5-1.5b", "quick": "qwen2.5-0.5b", "tiny": "tiny"}


def bench_load(preset_name: str, result: dict) -> None:
  """Writes the model, loads it each way in a fresh process, and records the side-by-side numbers."""
  size = MODEL_FOR_PRESET[preset_name]
  dtypes = ("float32",) if preset_name == "tiny" else ("float32", "bfloat16")
  with tempfile.TemporaryDirectory(prefix="bench_load_") as root:
    model_dir, gguf_path = Path(root) / "hf", Path(root) / "model.gguf"
    log(f"load: writing a random {size} (safetensors and GGUF)")
    n_params = write_random_model(model_dir, gguf_path, WIDTHS[size])
    runs = {}
    for dtype in dtypes:
      for loader, path in (("ours", model_dir), ("transformers", model_dir), ("ours_gguf", gguf_path)):
        runs[f"{loader}_{dtype}"] = measure(loader, path, dtype)
        log(f"load: {loader} {dtype}: {_fmt(runs[f'{loader}_{dtype}'])}")
  over = {k: r["load_rss_gib"] / r["params_gib"] for k, r in runs.items()}
  result["load_model"] = size
  result["load_params"] = n_params
  result["load_runs"] = runs
  result["load_rss_over_params"] = max(over[f"ours_{d}"] for d in dtypes)
  result["load_gguf_rss_over_params"] = max(over[f"ours_gguf_{d}"] for d in dtypes)
  result["load_hf_rss_over_params"] = max(over[f"transformers_{d}"] for d in dtypes)
  result["load_time_vs_hf"] = max(
    runs[f"ours_{d}"]["seconds"] / runs[f"transformers_{d}"]["seconds"] for d in dtypes
  )


def _fmt(run: dict) -> str:
  return (
    f"{run['seconds']:.1f} s, peak +{run['load_rss_gib']:.2f} GiB over {run['params_gib']:.2f} GiB of params "
    f"(imports {run['import_rss_gib']:.2f} GiB)"
  )


# Runs in a fresh interpreter: argv = loader, path, dtype; prints one JSON line.
_MEASURE = r"""
import json, sys, time
loader, path, dtype = sys.argv[1:4]

def status(key):
  for line in open("/proc/self/status"):
    if line.startswith(key):
      return int(line.split()[1]) * 1024

import torch, transformers  # both sides: imports are not the load (ours reads config.json through transformers)
torch.set_num_threads(len(__import__("os").sched_getaffinity(0)))
if loader.startswith("ours"):
  import jax
  from model.hf_import import load_model
  jax.devices()
import_rss = status("VmRSS:")
try:
  open("/proc/self/clear_refs", "w").write("5")  # peak RSS := current RSS
except OSError:
  pass
t0 = time.perf_counter()
if loader.startswith("ours"):
  lm = load_model(path, dtype=dtype, with_tokenizer=False)
  jax.block_until_ready(lm.params)
  params = sum(x.nbytes for x in jax.tree.leaves(lm.params))
else:
  model = transformers.AutoModelForCausalLM.from_pretrained(path, dtype=getattr(torch, dtype))
  params = sum(p.numel() * p.element_size() for p in model.parameters())
seconds = time.perf_counter() - t0
peak = status("VmHWM:")
print(json.dumps(dict(seconds=seconds, peak_rss=peak, import_rss=import_rss, params_bytes=params)))
"""


def measure(loader: str, path: Path, dtype: str) -> dict:
  """One load in a fresh process: seconds, and resident memory in GiB (peak, imports, the load's own)."""
  env = dict(os.environ, JAX_PLATFORMS="cpu")
  env.pop("XLA_FLAGS", None)
  r = subprocess.run(
    [sys.executable, "-c", _MEASURE, loader, str(path), dtype], capture_output=True, text=True, env=env
  )
  if r.returncode:
    raise RuntimeError(f"load bench ({loader}, {dtype}) failed:\n{r.stderr[-3000:]}")
  m = json.loads(r.stdout.strip().splitlines()[-1])
  gib = 2.0**30
  return {
    "seconds": m["seconds"],
    "params_gib": m["params_bytes"] / gib,
    "peak_rss_gib": m["peak_rss"] / gib,
    "import_rss_gib": m["import_rss"] / gib,
    "load_rss_gib": (m["peak_rss"] - m["import_rss"]) / gib,
  }


def write_random_model(model_dir: Path, gguf_path: Path, widths: dict, seed: int = 0) -> int:
  """config.json + model.safetensors (what save_pretrained writes) and a float32 .gguf of the same
  random weights, one tensor in memory at a time. Returns the parameter count."""
  import torch
  import transformers

  cfg = transformers.Qwen2Config(max_position_embeddings=32768, **widths)
  model_dir.mkdir(parents=True)
  cfg.save_pretrained(str(model_dir))
  with torch.device("meta"):  # names and shapes, no memory
    skeleton = transformers.AutoModelForCausalLM.from_config(cfg)
  shapes = {n: tuple(p.shape) for n, p in skeleton.named_parameters()}  # tied lm_head listed once
  rng = np.random.default_rng(seed)

  def tensors():
    for name, shape in shapes.items():
      yield name, (0.02 * rng.standard_normal(shape, dtype=np.float32)).astype(np.float32)

  with open(model_dir / "model.safetensors", "wb") as st, _GGUFStream(gguf_path, cfg, shapes) as gg:
    _write_safetensors_header(st, shapes)
    for name, arr in tensors():
      st.write(arr.tobytes())
      gg.write(name, arr)
  return sum(int(np.prod(s)) for s in shapes.values())


def _write_safetensors_header(f, shapes: dict[str, tuple[int, ...]]) -> None:
  header, offset = {"__metadata__": {"format": "pt"}}, 0
  for name, shape in shapes.items():
    end = offset + 4 * int(np.prod(shape))
    header[name] = {"dtype": "F32", "shape": list(shape), "data_offsets": [offset, end]}
    offset = end
  raw = json.dumps(header).encode()
  raw += b" " * (-len(raw) % 8)  # data 8-byte aligned, as the safetensors writer pads
  f.write(len(raw).to_bytes(8, "little") + raw)


class _GGUFStream:
  """A float32 Qwen2 .gguf written as llama.cpp names it, tensor data appended one at a time."""

  def __init__(self, path: Path, cfg, shapes: dict[str, tuple[int, ...]]):
    import gguf

    self._names = gguf.get_tensor_name_map(gguf.MODEL_ARCH.QWEN2, cfg.num_hidden_layers)
    w = self._w = gguf.GGUFWriter(str(path), "qwen2")
    w.add_name("bench-qwen2")
    w.add_context_length(cfg.max_position_embeddings)
    w.add_embedding_length(cfg.hidden_size)
    w.add_block_count(cfg.num_hidden_layers)
    w.add_feed_forward_length(cfg.intermediate_size)
    w.add_head_count(cfg.num_attention_heads)
    w.add_head_count_kv(cfg.num_key_value_heads)
    w.add_layer_norm_rms_eps(cfg.rms_norm_eps)
    w.add_rope_freq_base(cfg.rope_parameters["rope_theta"])
    w.add_vocab_size(cfg.vocab_size)
    w.add_tokenizer_model("gpt2")
    w.add_token_list([f"t{i}" for i in range(cfg.vocab_size)])
    w.add_token_types([gguf.TokenType.NORMAL] * cfg.vocab_size)
    w.add_token_merges([])
    w.add_eos_token_id(0)
    for name, shape in shapes.items():
      w.add_tensor_info(self._gguf_name(name), shape, np.dtype(np.float32), 4 * int(np.prod(shape)))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_ti_data_to_file()

  def _gguf_name(self, hf_name: str) -> str:
    module, leaf = hf_name.rsplit(".", 1)
    return f"{self._names.get_name(module)}.{leaf}"

  def write(self, name: str, arr: np.ndarray) -> None:
    self._w.write_tensor_data(arr)

  def __enter__(self):
    return self

  def __exit__(self, *exc):
    self._w.close()

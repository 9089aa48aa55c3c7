"""Streaming loads (model/param_stream.py): each host reads only its devices' slices, a layer at a time.

The oracle is the checkpoint itself read by the safetensors library (HF names, HF layout), mapped
to our tree by hand here: a sharded load over 8 fake devices must give exactly those arrays, on the
rules' shardings, having read each device block once. A traced load must never hold more than a
few tensors in host memory (the old path held every tensor and then a stacked copy).
"""

import gc
import os
import subprocess
import sys
import textwrap
import tracemalloc

import jax
import pytest
import tiny_models

from model.hf_import import load_config, load_params

SHARDED_SCRIPT = textwrap.dedent("""
    import os, sys
    os.environ["XLA_FLAGS"] = "--xla_force_host_platform_device_count=8"
    import jax, ml_dtypes, numpy as np
    from flax.traverse_util import flatten_dict
    from safetensors.numpy import load_file
    from configs.sharding_rules import TENSOR_PARALLEL
    from model.gguf_import import GGUFWeights
    from model.hf_import import load_config, load_params, safetensors_weights
    from model.gguf_import import load_gguf_config
    from model.lm import logical_param_axes, param_shapes, stack_layers
    from model.sharding import make_mesh, param_shardings
    assert len(jax.devices()) == 8
    mesh = make_mesh({"data": 2, "model": 4})

    def expected(sd, L, fused=False, q=None, kv=None, inter=None):
      '''Our tree from HF tensors, written out by hand (Llama names; Phi-3 fuses qkv and gate/up).'''
      layer = lambda n, i: sd[f"model.layers.{i}.{n}"]
      stack = lambda f: np.stack([f(i) for i in range(L)])
      out = {
        ("embed_tokens", "embedding"): sd["model.embed_tokens.weight"],
        ("norm", "scale"): sd["model.norm.weight"],
        ("lm_head", "kernel"): sd["lm_head.weight"].T,
      }
      for ours, hf in [("input_norm", "input_layernorm"), ("post_attn_norm", "post_attention_layernorm")]:
        out[("layers", ours, "scale")] = stack(lambda i: layer(hf + ".weight", i))
      for m in ("o_proj",):
        out[("layers", "attn", m, "kernel")] = stack(lambda i: layer(f"self_attn.{m}.weight", i).T)
      out[("layers", "mlp", "down_proj", "kernel")] = stack(lambda i: layer("mlp.down_proj.weight", i).T)
      if fused:
        qkv = lambda i: layer("self_attn.qkv_proj.weight", i)
        gu = lambda i: layer("mlp.gate_up_proj.weight", i)
        out[("layers", "attn", "q_proj", "kernel")] = stack(lambda i: qkv(i)[:q].T)
        out[("layers", "attn", "k_proj", "kernel")] = stack(lambda i: qkv(i)[q : q + kv].T)
        out[("layers", "attn", "v_proj", "kernel")] = stack(lambda i: qkv(i)[q + kv :].T)
        out[("layers", "mlp", "gate_proj", "kernel")] = stack(lambda i: gu(i)[:inter].T)
        out[("layers", "mlp", "up_proj", "kernel")] = stack(lambda i: gu(i)[inter:].T)
      else:
        for m in ("q_proj", "k_proj", "v_proj"):
          out[("layers", "attn", m, "kernel")] = stack(lambda i: layer(f"self_attn.{m}.weight", i).T)
        for m in ("gate_proj", "up_proj"):
          out[("layers", "mlp", m, "kernel")] = stack(lambda i: layer(f"mlp.{m}.weight", i).T)
      return out

    class Recording:
      '''Weights that note every slice read: (name, index, elements).'''
      def __init__(self, inner):
        self.inner, self.origin, self.reads = inner, inner.origin, []
      def __contains__(self, n): return n in self.inner
      def shape(self, n): return self.inner.shape(n)
      def read(self, n, idx):
        part = self.inner.read(n, idx)
        self.reads.append((n, idx, part.size))
        return part

    def check(params, cfg, want, dtype):
      shardings = flatten_dict(param_shardings(logical_param_axes(cfg), param_shapes(cfg), mesh, TENSOR_PARALLEL))
      for k, x in flatten_dict(params).items():  # in the layout cfg asks for (stacked or per layer)
        assert x.sharding.is_equivalent_to(shardings[k], x.ndim), (k, x.sharding)
        assert x.dtype == dtype, (k, x.dtype)
      got = flatten_dict(stack_layers(params, cfg)["params"])  # compared stacked, projections separate
      assert set(got) == set(want), sorted(set(got) ^ set(want))
      for k, w in want.items():
        np.testing.assert_array_equal(np.asarray(got[k]), w.astype(dtype), err_msg=str(k))

    llama, phi3, gguf = sys.argv[1:4]
    sd = load_file(f"{llama}/model.safetensors")
    for dtype in ("float32", "bfloat16"):
      cfg, _ = load_config(llama, dtype)
      weights = Recording(safetensors_weights(llama))
      params = load_params(llama, cfg, mesh, TENSOR_PARALLEL, weights)
      check(params, cfg, expected(sd, cfg.num_layers), np.dtype(dtype if dtype == "float32" else ml_dtypes.bfloat16))
    # q_proj's rows split over model=4, each read once: fused with k/v per layer on CPU, and 2 kv heads
    # too few for 4 devices, so head_dim is split (each device reads its quarter of every head)
    name = "model.layers.1.self_attn.q_proj.weight"
    q_reads = [(idx, n) for r, idx, n in weights.reads if r == name]
    rows = [i for idx, _ in q_reads for i in range(idx[0].start, idx[0].stop)]
    assert sorted(rows) == list(range(sd[name].shape[0])), q_reads
    assert sum(n for _, n in q_reads) == sd[name].size

    cfg, _ = load_config(phi3)
    q, kv = cfg.num_heads * cfg.head_dim, cfg.num_kv_heads * cfg.head_dim
    want = expected(load_file(f"{phi3}/model.safetensors"), cfg.num_layers, True, q, kv, cfg.intermediate_size)
    check(load_params(phi3, cfg, mesh, TENSOR_PARALLEL), cfg, want, np.float32)

    cfg, hf_config = load_gguf_config(gguf)
    check(load_params(gguf, cfg, mesh, TENSOR_PARALLEL, GGUFWeights(gguf, hf_config)), cfg, expected(sd, cfg.num_layers), np.float32)
    # orbax: a training run's step (params + optimizer state) restored straight onto the mesh, either
    # saved layout into the stacked one, cast to bfloat16; the optimizer state is never read
    import optax, orbax.checkpoint as ocp
    from model.checkpoint import restore_training_params
    from model.lm import init_params
    tmp = sys.argv[4]
    for layout in ("stacked", "per_layer"):
      trained = load_config(llama)[0].replace(layer_params=layout)
      params = init_params(trained, jax.random.key(1))
      opts = ocp.CheckpointManagerOptions(enable_async_checkpointing=False)
      with ocp.CheckpointManager(f"{tmp}/{layout}", options=opts) as m:
        m.save(5, args=ocp.args.StandardSave({"params": params, "opt_state": optax.adamw(1e-3).init(params)}))
      cfg = load_config(llama, "bfloat16")[0].replace(layer_params="stacked")
      want = {k: np.asarray(v) for k, v in flatten_dict(stack_layers(params, trained)["params"]).items()}
      check(restore_training_params(f"{tmp}/{layout}/5", cfg, mesh, TENSOR_PARALLEL), cfg, want, ml_dtypes.bfloat16)
    print("SHARDED_OK")
""")


@pytest.fixture(scope="module")
def llama_dir(tmp_path_factory):
  d = tmp_path_factory.mktemp("llama")
  model = tiny_models.make_hf_model(d / "hf", "llama", seed=7, tie_word_embeddings=False)
  tiny_models.write_gguf(d / "tiny.gguf", model, "F32")
  return d


def test_sharded_load_equals_the_checkpoint_tensors(llama_dir, tmp_path):
  """8 fake devices, data=2 x model=4, tensor-parallel: safetensors (f32, bf16), a fused family, GGUF,
  and a training run's orbax step."""
  phi3 = tmp_path / "phi3"
  tiny_models.make_hf_model(phi3, "phi3", seed=8, tie_word_embeddings=False)
  env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=8", JAX_PLATFORMS="cpu")
  args = [str(llama_dir / "hf"), str(phi3), str(llama_dir / "tiny.gguf"), str(tmp_path / "orbax")]
  r = subprocess.run([sys.executable, "-c", SHARDED_SCRIPT, *args], capture_output=True, text=True, env=env)
  assert "SHARDED_OK" in r.stdout, r.stderr[-4000:]


@pytest.mark.parametrize("layer_params", ["stacked", "per_layer"])
def test_host_memory_stays_near_one_tensor(tmp_path, layer_params):
  """Host (numpy) allocations while loading peak at a few tensors, never at the params or a stacked copy.

  Device buffers are XLA's, not traced; on this CPU they are the params themselves. A per-layer param
  may keep the numpy block it was read into as its device buffer (XLA:CPU takes aligned host arrays
  without a copy): that is the param, not a transient, so what the params still hold once loaded
  (released when they are) is not counted. The old path (every tensor read, then np.stack per param)
  peaks above the params, far over the bound.
  """
  d = tmp_path / "m"
  tiny_models.make_hf_model(d, "llama", hidden_size=256, intermediate_size=1024, num_hidden_layers=8)
  cfg, _ = load_config(d)
  cfg = cfg.replace(layer_params=layer_params)
  load_params(d, cfg)  # warm: compile the zeros and the layer writes outside the trace
  params_bytes = sum(x.nbytes for x in jax.tree.leaves(load_params(d, cfg)))
  largest = 4 * 256 * 1024  # an MLP tensor, float32
  bound = 3 * largest + (6 << 20)  # a few tensors in flight + 6 MiB of Python objects (jit caches, trees)
  assert params_bytes > 3 * bound  # the rule is only tested if holding the params would break it
  tracemalloc.start()
  try:
    params = load_params(d, cfg)
    jax.block_until_ready(params)
    loaded, peak = tracemalloc.get_traced_memory()
    del params
    gc.collect()  # a leaf in a reference cycle would otherwise keep its buffer past the del
    held_by_params = loaded - tracemalloc.get_traced_memory()[0]
  finally:
    tracemalloc.stop()
  assert peak - held_by_params <= bound, (
    f"peak {peak / 2**20:.1f} MiB ({held_by_params / 2**20:.1f} MiB of it the params' own buffers) > "
    f"{bound / 2**20:.1f} MiB (params {params_bytes / 2**20:.1f} MiB)"
  )


@pytest.mark.parametrize("layer_params", ["stacked", "per_layer"])
def test_whole_tensors_are_read_before_any_layer(llama_dir, layer_params):
  """Embeddings and lm_head (a model's largest tensors, each a whole host block on one device) are
  read while no layer is held yet, in either block layout: their transient never adds to the params."""
  from model.hf_import import safetensors_weights

  inner = safetensors_weights(llama_dir / "hf")
  names = []

  class Recording:
    origin = inner.origin

    def __contains__(self, name):
      return name in inner

    def shape(self, name):
      return inner.shape(name)

    def read(self, name, index):
      names.append(name)
      return inner.read(name, index)

  cfg, _ = load_config(llama_dir / "hf")
  load_params(llama_dir / "hf", cfg.replace(layer_params=layer_params), weights=Recording())
  first_layer = next(i for i, n in enumerate(names) if n.startswith("model.layers."))
  whole = {"model.embed_tokens.weight", "lm_head.weight", "model.norm.weight"}
  assert set(names[:first_layer]) == whole and not whole & set(names[first_layer:]), names

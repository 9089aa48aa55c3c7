"""The Flax decoder against transformers (PyTorch, CPU) on tiny random models of every variant."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import tiny_models
import torch

from model.hf_import import load_model
from model.lm import forward, to_layout

VARIANTS = {
  "llama": ("llama", {}),
  "llama3_rope": (
    "llama",
    dict(
      rope_scaling={
        "rope_type": "llama3",
        "factor": 8.0,
        "low_freq_factor": 1.0,
        "high_freq_factor": 4.0,
        "original_max_position_embeddings": 16,
      },
      rope_theta=500000.0,
    ),
  ),
  "linear_rope": ("llama", dict(rope_scaling={"rope_type": "linear", "factor": 4.0})),
  "tied": ("llama", dict(tie_word_embeddings=True)),
  "mistral_sliding": ("mistral", dict(sliding_window=7)),
  "qwen2": ("qwen2", {}),
  # layer 0 full attention, layer 1 a sliding window: per-layer windows in the one scanned layer body
  "qwen2_mixed_window": ("qwen2", dict(use_sliding_window=True, sliding_window=5, max_window_layers=1)),
  "qwen3": ("qwen3", {}),
  # head_dim 16 != hidden / heads; (1 + w) norms, GeGLU, sqrt(hidden) embedding scale, tied embeddings
  "gemma": ("gemma", {}),
  # + soft-capped attention and final logits, query_pre_attn_scalar, layer 0 sliding (5) / layer 1
  # global, norms after both sublayers (tiny_models.hf_config sets these)
  "gemma2": ("gemma2", {}),
  "phi3": ("phi3", {}),  # fused qkv_proj / gate_up_proj, split at import
  # longrope past original_max_position_embeddings (8): long factors, attention factor sqrt(1 + ln 32 / ln 8)
  # (prompts cross it at once; test_families covers short sequences and crossing while decoding)
  "phi3_longrope": (
    "phi3",
    dict(
      rope_scaling={
        "rope_type": "longrope",
        "short_factor": [1.0, 1.3, 2.0, 3.5],
        "long_factor": [1.5, 4.0, 9.0, 20.0],
      },
      original_max_position_embeddings=8,
    ),
  ),
  "phi3_partial_rotary_sliding": ("phi3", dict(partial_rotary_factor=0.5, sliding_window=6)),
  "olmo_clip_qkv": ("olmo", dict(clip_qkv=0.5)),  # non-parametric LayerNorm
  "olmo2": ("olmo2", {}),  # post-sublayer norms only, q/k norm over all heads
  "gpt2": ("gpt2", {}),  # learned positions, LayerNorm with bias, gelu_new, Conv1D layout, fused c_attn
}


# The shared machinery (chunked prefill, right padding, sub-batch rows, unrolled layers) is family-
# independent except through positions and windows: it runs on the variants that vary those (rope
# scaling, partial rotary, learned positions, uniform / mixed / local-global windows); logits and
# greedy generation run on every variant.
MACHINERY = (
  "gemma2",
  "gpt2",
  "llama3_rope",
  "mistral_sliding",
  "phi3_partial_rotary_sliding",
  "qwen2_mixed_window",
)


def _load(name, tmp_path_factory):
  family, overrides = VARIANTS[name]
  d = tmp_path_factory.mktemp(name)
  torch_model = tiny_models.make_hf_model(d, family, seed=1, **overrides)
  return torch_model, load_model(d)


@pytest.fixture(scope="module", params=sorted(VARIANTS))
def pair(request, tmp_path_factory):
  return _load(request.param, tmp_path_factory)


@pytest.fixture(scope="module", params=MACHINERY)
def machinery_pair(request, tmp_path_factory):
  return _load(request.param, tmp_path_factory)


def _full_logits(lm, tokens):
  B, T = tokens.shape
  cache = lm.init_cache(B, T)
  zeros = jnp.zeros((B,), jnp.int32)
  logits, _ = forward(lm.cfg, lm.params, jnp.asarray(tokens), zeros, zeros + T, cache)
  return np.asarray(logits)


def test_logits_match_transformers(pair):
  torch_model, lm = pair
  tokens = np.random.default_rng(0).integers(4, tiny_models.VOCAB, size=(2, 20))
  with torch.no_grad():
    ref = torch_model(torch.tensor(tokens)).logits.numpy()
  np.testing.assert_allclose(_full_logits(lm, tokens), ref, atol=2e-4, rtol=2e-4)


@pytest.mark.parametrize("decode_block", [0, 4], ids=["dense", "blocked"])
def test_chunked_prefill_then_decode_equals_full_forward(machinery_pair, decode_block):
  """Decode steps read the cache whole (dense) or in blocks up to the latest position (blocked):
  both equal the full forward, which equals transformers."""
  _, lm = machinery_pair
  if lm.cfg.rope.kind == "longrope":
    pytest.skip("longrope's frequencies follow the length a call reaches: chunks under 8 use short ones")
  tokens = np.random.default_rng(1).integers(4, tiny_models.VOCAB, size=(2, 20))
  full = _full_logits(lm, tokens)
  cache = lm.init_cache(2, 24)
  cfg = lm.cfg.replace(decode_block=decode_block)
  step = jax.jit(lambda p, t, s, n, c: forward(cfg, p, t, s, n, c))
  got = []
  pos = 0
  for chunk in (5, 6):  # chunked prefill of the first 11 tokens
    s = jnp.full((2,), pos, jnp.int32)
    out, cache = step(lm.params, jnp.asarray(tokens[:, pos : pos + chunk]), s, s * 0 + chunk, cache)
    got.append(np.asarray(out))
    pos += chunk
  while pos < 20:  # then one token at a time
    s = jnp.full((2,), pos, jnp.int32)
    out, cache = step(lm.params, jnp.asarray(tokens[:, pos : pos + 1]), s, s * 0 + 1, cache)
    got.append(np.asarray(out))
    pos += 1
  np.testing.assert_allclose(np.concatenate(got, axis=1), full, atol=2e-4, rtol=2e-4)


def test_right_padded_rows_equal_unpadded(machinery_pair):
  """Rows of different lengths in one batch: padding never touches a row's result."""
  _, lm = machinery_pair
  rng = np.random.default_rng(2)
  a, b = rng.integers(4, tiny_models.VOCAB, size=12), rng.integers(4, tiny_models.VOCAB, size=7)
  batch = np.zeros((2, 12), np.int64)
  batch[0], batch[1, :7] = a, b
  cache = lm.init_cache(2, 16)
  logits, _ = forward(
    lm.cfg, lm.params, jnp.asarray(batch), jnp.zeros((2,), jnp.int32), jnp.asarray([12, 7], jnp.int32), cache
  )
  np.testing.assert_allclose(np.asarray(logits[1, :7]), _full_logits(lm, b[None])[0], atol=2e-4, rtol=2e-4)
  np.testing.assert_allclose(np.asarray(logits[0]), _full_logits(lm, a[None])[0], atol=2e-4, rtol=2e-4)


def test_sub_batch_forward_touches_only_its_rows(machinery_pair):
  """forward(rows=idx) on 2 of 4 cache rows (+ a filler) == those rows of the whole-batch forward; others untouched."""
  _, lm = machinery_pair
  rng = np.random.default_rng(3)
  prompt = jnp.asarray(rng.integers(4, tiny_models.VOCAB, size=(4, 9)))
  zeros = jnp.zeros((4,), jnp.int32)
  _, cache = forward(lm.cfg, lm.params, prompt, zeros, zeros + 9, lm.init_cache(4, 12))
  nxt = jnp.asarray(rng.integers(4, tiny_models.VOCAB, size=(4, 1)))
  full_logits, full_cache = forward(lm.cfg, lm.params, nxt, zeros + 9, zeros + 1, cache)
  idx = jnp.asarray([2, 0, 3], jnp.int32)  # row 3 is a filler (length 0): it must write nothing
  sub_logits, sub_cache = forward(
    lm.cfg, lm.params, nxt[idx], zeros[:3] + 9, jnp.asarray([1, 1, 0], jnp.int32), cache, rows=idx
  )
  np.testing.assert_allclose(
    np.asarray(sub_logits[:2]), np.asarray(full_logits[idx[:2]]), atol=2e-5, rtol=2e-5
  )
  for got, whole, before in zip(
    jax.tree.leaves(sub_cache), jax.tree.leaves(full_cache), jax.tree.leaves(cache)
  ):
    # [L, B, K, S, D]: rows are axis 1
    np.testing.assert_allclose(
      np.asarray(got[:, idx[:2]]), np.asarray(whole[:, idx[:2]]), atol=2e-5, rtol=2e-5
    )
    np.testing.assert_array_equal(
      np.asarray(got[:, 1::2]), np.asarray(before[:, 1::2])
    )  # rows 1, 3 untouched


def test_blocked_decode_row_does_not_depend_on_its_batch(machinery_pair):
  """Blocked decode reads up to the batch's latest position: a row decoded next to a longer row (more
  blocks, and on windowed layers a different first block) gets bit-identical logits to the same row
  next to a copy of itself, and the same logits (to rounding) as the dense path, whole batch and sub-batch (rows=)."""
  _, lm = machinery_pair
  cfg = lm.cfg.replace(decode_block=4)
  rng = np.random.default_rng(6)
  T, short, long_ = 24, 6, 21
  tokens = jnp.asarray(rng.integers(4, tiny_models.VOCAB, size=(2, long_ + 1)))
  lengths = jnp.asarray([short, long_], jnp.int32)
  zeros = jnp.zeros((2,), jnp.int32)
  _, cache = forward(cfg, lm.params, tokens[:, :long_], zeros, lengths, lm.init_cache(2, T))
  nxt = tokens[:, long_:]  # [2, 1] one more token per row, at each row's own position

  def decode(c, rows=None, b=2, config=cfg):
    idx = jnp.arange(b) if rows is None else rows
    logits, _ = forward(config, lm.params, nxt[idx], lengths[idx], jnp.ones((b,), jnp.int32), c, rows=rows)
    return np.asarray(logits)

  both = decode(cache)
  # The short row next to a copy of itself (same batch size: the dense layers' rounding stays the same)
  twin = jax.tree.map(lambda x: x[:, jnp.asarray([0, 0])], cache)
  logits, _ = forward(
    cfg, lm.params, nxt[:1].repeat(2, 0), lengths[:1].repeat(2), jnp.ones((2,), jnp.int32), twin
  )
  np.testing.assert_array_equal(both[0], np.asarray(logits[0]))
  dense = decode(cache, config=lm.cfg.replace(decode_block=0))
  np.testing.assert_allclose(both, dense, atol=2e-5, rtol=2e-5)
  sub = decode(cache, rows=jnp.asarray([1], jnp.int32), b=1)  # the long row through rows=
  np.testing.assert_allclose(sub[0], dense[1], atol=2e-5, rtol=2e-5)


def greedy_reference(lm, prompt, n_new):
  """Plain greedy loop over the model forward with a cache (the decode package has its own)."""
  T = len(prompt) + n_new
  cache = lm.init_cache(1, T)
  toks = list(prompt)
  logits, cache = forward(
    lm.cfg,
    lm.params,
    jnp.asarray([toks]),
    jnp.zeros((1,), jnp.int32),
    jnp.asarray([len(toks)], jnp.int32),
    cache,
  )
  nxt = int(np.argmax(np.asarray(logits[0, -1])))
  for _ in range(n_new - 1):
    toks.append(nxt)
    logits, cache = forward(
      lm.cfg,
      lm.params,
      jnp.asarray([[nxt]]),
      jnp.asarray([len(toks) - 1], jnp.int32),
      jnp.ones((1,), jnp.int32),
      cache,
    )
    nxt = int(np.argmax(np.asarray(logits[0, -1])))
  toks.append(nxt)
  return toks[len(prompt) :]


def test_greedy_generation_equals_hf_generate(pair):
  torch_model, lm = pair
  prompt = list(np.random.default_rng(3).integers(4, tiny_models.VOCAB, size=9))
  with torch.no_grad():
    ref = torch_model.generate(
      torch.tensor([prompt]), max_new_tokens=12, do_sample=False, eos_token_id=None, pad_token_id=0
    )[0, 9:].tolist()
  assert greedy_reference(lm, prompt, 12) == ref


def test_layer_layouts_give_the_same_logits_and_cache(machinery_pair):
  """The programs over the same weights: scanned over stacked params, scanned over per-layer params
  (the CPU default: a switch per dot picks the layer's array) and unrolled, each with q/k/v and
  gate/up separate and fused, for a prefill chunk and a one-token decode after it; the layouts
  convert every way exactly."""
  _, lm = machinery_pair
  base = lm.cfg.replace(fused_projections="separate")
  configs = {
    "stacked": base.replace(scan_layers=True, layer_params="stacked"),
    "per_layer": base.replace(scan_layers=True, layer_params="per_layer"),
    "unrolled": base.replace(scan_layers=False),
  }
  configs.update({f"{k}_fused": c.replace(fused_projections="fused") for k, c in list(configs.items())})
  assert configs["stacked"].stacked_params and not configs["per_layer"].stacked_params
  assert lm.cfg.replace(layer_params="per_layer").fuse_projections  # "auto": fused with per-layer params
  assert not lm.cfg.replace(layer_params="stacked").fuse_projections
  programs = {name: (cfg, to_layout(lm.params, cfg)) for name, cfg in configs.items()}
  per_layer, stacked = programs["per_layer"][1]["params"], programs["stacked_fused"][1]["params"]
  assert "layers_1" in per_layer and "layers" not in per_layer and "q_proj" in per_layer["layers_0"]["attn"]
  assert (
    "layers" in stacked
    and "qkv_proj" in stacked["layers"]["attn"]
    and "q_proj" not in stacked["layers"]["attn"]
  )
  for name, (_, params) in programs.items():  # every layout converts back to every other exactly
    for other, (cfg, want) in programs.items():
      back = to_layout(params, cfg)
      assert jax.tree.structure(back) == jax.tree.structure(want), (name, other)
      for a, b in zip(jax.tree.leaves(back), jax.tree.leaves(want)):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b), err_msg=f"{name} -> {other}")
  tokens = jnp.asarray(np.random.default_rng(5).integers(4, tiny_models.VOCAB, size=(2, 12)))
  zeros = jnp.zeros((2,), jnp.int32)
  outs = {}
  for name, (cfg, params) in programs.items():
    logits, cache = forward(cfg, params, tokens[:, :11], zeros, zeros + 11, lm.init_cache(2, 16))
    step, cache = forward(cfg, params, tokens[:, 11:], zeros + 11, zeros + 1, cache)
    outs[name] = (logits, step, cache)
  for name in programs:
    for a, b in zip(jax.tree.leaves(outs[name]), jax.tree.leaves(outs["stacked"])):
      np.testing.assert_allclose(np.asarray(a), np.asarray(b), atol=1e-5, rtol=1e-5, err_msg=name)

"""Tiny random Hugging Face models and tokenizers, made inside the tests (never downloaded).

Models are built with transformers (PyTorch), saved with save_pretrained, and then loaded through
the project's real import path.
"""

from __future__ import annotations

from pathlib import Path

CHARS = list("abcdefghijklmnopqrstuvwxyz0123456789 .,:?=+-*#<>$\n")
SPECIALS = ["<pad>", "<bos>", "<eos>", "<unk>"]


def make_tokenizer(out_dir: str | Path, chat_template: str | None = None):
  """Character-level tokenizer (each char one token, '\\n' its own token), HF layout."""
  from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers
  from transformers import PreTrainedTokenizerFast

  vocab = {t: i for i, t in enumerate(SPECIALS + CHARS)}
  tok = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
  tok.pre_tokenizer = pre_tokenizers.Split(Regex(r"[\s\S]"), behavior="isolated")
  tok.decoder = decoders.Fuse()
  fast = PreTrainedTokenizerFast(
    tokenizer_object=tok, bos_token="<bos>", eos_token="<eos>", pad_token="<pad>", unk_token="<unk>"
  )
  if chat_template:
    fast.chat_template = chat_template
  fast.save_pretrained(str(out_dir))
  return fast


VOCAB = len(SPECIALS) + len(CHARS)
EOS_ID = SPECIALS.index("<eos>")
BOS_ID = SPECIALS.index("<bos>")
PAD_ID = SPECIALS.index("<pad>")


def hf_config(family: str, **overrides):
  """A small config of the given family; the vocab is padded past the tokenizer (as real models are)."""
  import transformers

  base = dict(
    vocab_size=VOCAB + 6,
    hidden_size=32,
    intermediate_size=64,
    num_hidden_layers=2,
    num_attention_heads=4,
    num_key_value_heads=2,
    max_position_embeddings=256,
    bos_token_id=BOS_ID,
    eos_token_id=EOS_ID,
    pad_token_id=PAD_ID,
    rms_norm_eps=1e-6,
  )
  cls = transformers.CONFIG_MAPPING[family]  # the family's config class
  if family in ("qwen3", "gemma", "gemma2"):
    base["head_dim"] = 16  # explicit head_dim != hidden/heads
  if family == "gemma2":  # caps small enough that tanh bends the logits; query scale != head_dim's
    base.update(
      query_pre_attn_scalar=24, attn_logit_softcapping=4.0, final_logit_softcapping=3.0, sliding_window=5
    )
  if family == "olmo":
    del base["rms_norm_eps"]  # OLMo's LayerNorm has a fixed epsilon
  if family == "gpt2":  # GPT-2's own names; no GQA
    del base["num_key_value_heads"], base["rms_norm_eps"]
    base["n_inner"] = base.pop("intermediate_size")
  base.update(overrides)
  return cls(**base)


def make_hf_model(
  out_dir: str | Path,
  family: str = "llama",
  seed: int = 0,
  tokenizer: bool = True,
  init_std: float = 0.2,
  **overrides,
):
  """Random model saved to out_dir; returns the torch model (eval mode, float32) for reference."""
  import torch
  import transformers

  cfg = hf_config(family, **overrides)
  cfg.initializer_range = init_std  # larger than default so greedy outputs are not degenerate
  torch.manual_seed(seed)
  model = transformers.AutoModelForCausalLM.from_config(cfg, attn_implementation="eager").eval()
  with torch.no_grad():  # norms and biases default to 1/0; randomise so bugs there show
    for name, p in model.named_parameters():
      if name.endswith("norm.weight") or (".ln_" in name and name.endswith(".weight")):  # GPT-2: ln_1, ln_f
        p.copy_(1.0 + 0.1 * torch.randn_like(p))
      elif name.endswith(".bias"):
        p.copy_(0.1 * torch.randn_like(p))
  model.save_pretrained(str(out_dir), safe_serialization=True)
  if tokenizer:
    make_tokenizer(out_dir)
  return model


def make_model_pair(out_dir: str | Path, max_position_embeddings: int = 256) -> Path:
  """A student (Llama) and a larger teacher of another family (Qwen2) sharing one tokenizer,
  saved as out_dir/s and out_dir/t: the pair every decode and sweep test guides with."""
  out_dir = Path(out_dir)
  make_hf_model(
    out_dir / "s", "llama", seed=11, init_std=0.3, max_position_embeddings=max_position_embeddings
  )
  make_hf_model(
    out_dir / "t",
    "qwen2",
    seed=12,
    hidden_size=48,
    num_hidden_layers=3,
    init_std=0.3,
    max_position_embeddings=max_position_embeddings,
  )
  return out_dir


def gguf_tokens(vocab_size: int) -> list[str]:
  """make_tokenizer's vocabulary spelled as a sentencepiece GGUF does (<s>, </s>, '▁' for a space, a
  byte token for '\\n'; same ids), padded with unused tokens to the model's vocab."""
  chars = ["\u2581" if c == " " else "<0x0A>" if c == "\n" else c for c in CHARS]
  return ["<pad>", "<s>", "</s>", "<unk>"] + chars + [f"<unused{i}>" for i in range(vocab_size - VOCAB)]


def _llama_cpp_permute(w, n_head: int):
  """llama.cpp's convert_hf_to_gguf reorders q/k rows (HF's rotate-half -> interleaved pairs)."""
  return w.reshape(n_head, 2, w.shape[0] // n_head // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def write_gguf(path: str | Path, model, qtype: str = "F32") -> Path:
  """A tiny Llama or Qwen2 (torch model from make_hf_model) written as llama.cpp writes it: metadata, a
  sentencepiece tokenizer, tensors under llama.cpp names (Llama's q/k rows permuted); matrices in
  `qtype` (F32, F16 or Q8_0), 1-D tensors F32."""
  import gguf
  import numpy as np

  cfg = model.config
  path = Path(path)
  arch = cfg.model_type
  w = gguf.GGUFWriter(str(path), arch)
  w.add_name(f"tiny-{arch}")
  w.add_context_length(cfg.max_position_embeddings)
  w.add_embedding_length(cfg.hidden_size)
  w.add_block_count(cfg.num_hidden_layers)
  w.add_feed_forward_length(cfg.intermediate_size)
  w.add_head_count(cfg.num_attention_heads)
  w.add_head_count_kv(cfg.num_key_value_heads)
  w.add_layer_norm_rms_eps(cfg.rms_norm_eps)
  w.add_rope_freq_base(cfg.rope_parameters["rope_theta"])
  w.add_rope_dimension_count(cfg.hidden_size // cfg.num_attention_heads)
  w.add_vocab_size(cfg.vocab_size)
  w.add_tokenizer_model("llama")
  tokens = gguf_tokens(cfg.vocab_size)
  w.add_token_list(tokens)
  w.add_token_scores([0.0] * len(tokens))
  types = [gguf.TokenType.CONTROL] * len(SPECIALS) + [gguf.TokenType.NORMAL] * len(CHARS)
  types += [gguf.TokenType.UNUSED] * (len(tokens) - VOCAB)
  types[SPECIALS.index("<unk>")] = gguf.TokenType.UNKNOWN
  types[tokens.index("<0x0A>")] = gguf.TokenType.BYTE
  w.add_token_types(types)
  w.add_bos_token_id(BOS_ID)
  w.add_eos_token_id(EOS_ID)
  w.add_pad_token_id(PAD_ID)
  w.add_unk_token_id(SPECIALS.index("<unk>"))
  names = gguf.get_tensor_name_map(gguf.MODEL_ARCH[arch.upper()], cfg.num_hidden_layers)
  qt = gguf.GGMLQuantizationType[qtype]
  for hf_name, t in model.state_dict().items():
    arr = t.detach().float().numpy()
    if arch == "llama" and ".q_proj." in hf_name:
      arr = _llama_cpp_permute(arr, cfg.num_attention_heads)
    elif arch == "llama" and ".k_proj." in hf_name:
      arr = _llama_cpp_permute(arr, cfg.num_key_value_heads)
    name = names.get_name(hf_name.rsplit(".", 1)[0]) + "." + hf_name.rsplit(".", 1)[1]
    if arr.ndim == 1 or qt == gguf.GGMLQuantizationType.F32:
      w.add_tensor(name, np.ascontiguousarray(arr, np.float32))
    else:
      w.add_tensor(name, gguf.quants.quantize(arr, qt), raw_dtype=qt)
  w.write_header_to_file()
  w.write_kv_data_to_file()
  w.write_tensors_to_file()
  w.close()
  return path

"""Train a Llama-family decoder from scratch on the synthetic task (the demo teacher).

  python -m experiments.training.train --config configs/train_teacher.py [--config.steps=500 ...]

Loss on target tokens only; AdamW with warmup + cosine decay and global-norm clipping; one jitted
step. An orbax CheckpointManager saves {params, opt_state} every `save_every` steps; a rerun with
the same workdir resumes from the latest step and continues bit-for-bit (the batch at each step
is a pure function of (seed, step), see experiments.training.train_data). The result is exported as a
Hugging Face directory (workdir/hf) so the decode loop loads it through the real import path.
`train()` is the reusable part (experiments.training.distill trains students with it).
"""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path
from typing import Any, Sequence

import jax
import jax.numpy as jnp
import numpy as np
import optax
import orbax.checkpoint as ocp
from absl import app, logging
from ml_collections import ConfigDict, config_flags
from tqdm import tqdm

from experiments.cli import config_value, parse_flags
from experiments.tasks.synthetic import SyntheticConfig, generate_problems
from experiments.tasks.synthetic_format import FORMAT_FILE, FORMAT_RECORD, prompt_text, target_text
from experiments.training import train_data
from experiments.training.greedy_eval import TRAINING_FILE, accuracy, decode_greedy
from model.config import DecoderConfig
from model.errors import UserError, report_user_errors
from model.hf_export import export_hf
from model.hf_import import load_model, load_tokenizer
from model.kv_cache import init_cache
from model.lm import forward, init_params

# Config fields that must not change between a run and its resumption (they change the result).
RESUME_KEYS = ("model", "optim", "seed", "batch_size", "seq_len", "steps", "vocab_multiple")
MODEL_KEYS = {
  "family",
  "hidden_size",
  "num_layers",
  "num_heads",
  "num_kv_heads",
  "head_dim",
  "intermediate_size",
  "max_position_embeddings",
  "tie_word_embeddings",
  "rope_theta",
  "rms_norm_eps",
}


class TrainConfigError(UserError):
  """A training config that cannot be run as given."""


@dataclasses.dataclass(frozen=True)
class TrainResult:
  out_dir: Path  # exported HF dir (workdir/hf), or the checkpoint dir when halted early
  resumed_from: int  # step restored from a checkpoint (0 = fresh start)
  last_step: int  # steps completed when this call returned
  last_loss: float  # loss at the last logged step (nan if none was logged)


def model_config(spec: dict, vocab_size: int, vocab_multiple: int = 64) -> DecoderConfig:
  """DecoderConfig from a size dict; the embedding is padded to a multiple of `vocab_multiple`."""
  spec = dict(spec)
  unknown = set(spec) - MODEL_KEYS
  if unknown:
    raise TrainConfigError(f"unknown model keys {sorted(unknown)}; allowed: {sorted(MODEL_KEYS)}")
  for key in ("hidden_size", "num_layers", "num_heads", "intermediate_size"):
    if not isinstance(spec.get(key), int) or spec[key] <= 0:
      raise TrainConfigError(f"model.{key} must be a positive integer, got {spec.get(key)!r}")
  heads = spec["num_heads"]
  kv_heads = spec.get("num_kv_heads", heads)
  if heads % kv_heads:
    raise TrainConfigError(f"model.num_heads={heads} must be a multiple of model.num_kv_heads={kv_heads}")
  head_dim = spec.get("head_dim") or spec["hidden_size"] // heads
  if not spec.get("head_dim") and spec["hidden_size"] % heads:
    raise TrainConfigError(
      f"model.hidden_size={spec['hidden_size']} is not divisible by num_heads={heads}; "
      "set model.head_dim explicitly"
    )
  if head_dim % 2:
    raise TrainConfigError(f"head_dim={head_dim} must be even (rotary embeddings rotate pairs)")
  from model.config import RopeConfig

  return DecoderConfig(
    family=spec.get("family", "llama"),
    vocab_size=-(-vocab_size // vocab_multiple) * vocab_multiple,
    hidden_size=spec["hidden_size"],
    intermediate_size=spec["intermediate_size"],
    num_layers=spec["num_layers"],
    num_heads=heads,
    num_kv_heads=kv_heads,
    head_dim=head_dim,
    max_position_embeddings=spec.get("max_position_embeddings", 256),
    rms_norm_eps=spec.get("rms_norm_eps", 1e-6),
    rope=RopeConfig(theta=float(spec.get("rope_theta", 10000.0))),
    tie_word_embeddings=bool(spec.get("tie_word_embeddings", False)),
  )


def num_params(params) -> int:
  return int(sum(np.prod(x.shape) for x in jax.tree.leaves(params)))


def make_optimizer(optim: dict, steps: int) -> optax.GradientTransformation:
  """AdamW (no decay on norm scales) under warmup + cosine decay, after global-norm clipping."""
  lr, warmup = optim["learning_rate"], optim["warmup_steps"]
  if not 0 <= warmup < steps:
    raise TrainConfigError(f"optim.warmup_steps={warmup} must be in [0, steps={steps})")
  schedule = optax.warmup_cosine_decay_schedule(
    0.0, lr, warmup, steps, end_value=lr * optim["final_lr_fraction"]
  )
  decay_mask = lambda params: jax.tree.map(lambda x: x.ndim >= 2, params)
  return optax.chain(
    optax.clip_by_global_norm(optim["clip_norm"]),
    optax.adamw(
      schedule, b1=optim["b1"], b2=optim["b2"], weight_decay=optim["weight_decay"], mask=decay_mask
    ),
  )


def loss_fn(cfg: DecoderConfig, params, batch) -> jax.Array:
  """Mean next-token cross-entropy over target positions."""
  tokens = batch["tokens"]  # [B, S]
  inputs, labels = tokens[:, :-1], tokens[:, 1:]  # [B, C], C = S - 1
  mask = batch["loss_mask"][:, 1:]  # [B, C]
  B, C = inputs.shape
  zeros = jnp.zeros((B,), jnp.int32)
  logits, _ = forward(cfg, params, inputs, zeros, zeros + C, init_cache(cfg, B, C))  # [B, C, V]
  ce = optax.softmax_cross_entropy_with_integer_labels(logits, labels)  # [B, C]
  return jnp.sum(ce * mask) / jnp.maximum(jnp.sum(mask), 1.0)


def make_train_step(cfg: DecoderConfig, optimizer: optax.GradientTransformation):
  def step(state, batch):
    loss, grads = jax.value_and_grad(lambda p: loss_fn(cfg, p, batch))(state["params"])
    updates, opt_state = optimizer.update(grads, state["opt_state"], state["params"])
    params = optax.apply_updates(state["params"], updates)
    return {"params": params, "opt_state": opt_state}, {"loss": loss, "grad_norm": optax.tree.norm(grads)}

  return jax.jit(step, donate_argnums=0)


def to_plain(value):
  """ConfigDicts/tuples -> JSON-ready dicts/lists."""
  if isinstance(value, ConfigDict):
    value = value.to_dict()
  if isinstance(value, dict):
    return {k: to_plain(v) for k, v in value.items()}
  if isinstance(value, (list, tuple)):
    return [to_plain(v) for v in value]
  return value


def _check_resumable(workdir: Path, config: ConfigDict, model_spec: dict) -> None:
  """Refuses to resume a run whose result-changing settings differ from this config."""
  record = {k: (model_spec if k == "model" else config[k]) for k in RESUME_KEYS}
  record = json.loads(json.dumps(to_plain(record)))
  path = workdir / "run_config.json"
  if path.exists():
    old = json.loads(path.read_text())
    changed = sorted(k for k in RESUME_KEYS if old.get(k) != record[k])
    if changed:
      raise TrainConfigError(
        f"{workdir} holds a run with different {changed}: resuming would not reproduce "
        "it; use a new workdir or restore the old settings"
      )
  workdir.mkdir(parents=True, exist_ok=True)
  path.write_text(json.dumps(record, indent=2))


def export_model(
  out_dir: Path,
  cfg: DecoderConfig,
  params,
  tokenizer_dir: Path,
  config: ConfigDict,
  extra: dict | None = None,
) -> Path:
  """HF directory + the prompt format and task settings the model was trained with."""
  export_hf(out_dir, cfg, params, tokenizer=tokenizer_dir, dtype=config.export_dtype)
  (out_dir / FORMAT_FILE).write_text(json.dumps(FORMAT_RECORD, indent=2) + "\n")
  info = {"synthetic": to_plain(config.synthetic), **(extra or {})}
  (out_dir / TRAINING_FILE).write_text(json.dumps(info, indent=2) + "\n")
  return out_dir


def train(
  config: ConfigDict,
  examples: Sequence[tuple[str, str]],
  tokenizer_dir: str | Path,
  workdir: str | Path,
  model_spec: dict | None = None,
) -> TrainResult:
  """Trains (or resumes) in workdir on (prompt, target) texts and exports workdir/hf."""
  workdir, tokenizer_dir = Path(workdir).absolute(), Path(tokenizer_dir)
  model_spec = dict(model_spec if model_spec is not None else config.model)
  steps = config.steps
  if steps <= 0 or config.save_every <= 0:
    raise TrainConfigError(f"steps={steps} and save_every={config.save_every} must be positive")
  tok = load_tokenizer(tokenizer_dir)
  cfg = model_config(model_spec, len(tok), config.vocab_multiple)
  if config.seq_len > cfg.max_position_embeddings:
    raise TrainConfigError(
      f"seq_len={config.seq_len} exceeds model.max_position_embeddings={cfg.max_position_embeddings}"
    )
  data = train_data.tokenize_examples(tok, examples, config.seq_len)
  train_data.steps_per_epoch(data.num_examples, config.batch_size)  # fails early if too few examples
  _check_resumable(workdir, config, model_spec)

  optimizer = make_optimizer(config.optim, steps)
  params = init_params(cfg, jax.random.key(config.seed))
  state = {"params": params, "opt_state": optimizer.init(params)}
  logging.info(
    "model: %d params, %s; %d examples, %.1f epochs",
    num_params(params),
    cfg,
    data.num_examples,
    steps * config.batch_size / data.num_examples,
  )
  options = ocp.CheckpointManagerOptions(max_to_keep=config.keep, enable_async_checkpointing=False)
  with ocp.CheckpointManager(workdir / "checkpoints", options=options) as mngr:
    start = mngr.latest_step() or 0
    if start:
      abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, state)
      state = mngr.restore(start, args=ocp.args.StandardRestore(abstract))
      logging.info("resumed from step %d", start)
    stop = min(steps, config.halt_after_steps) if config.halt_after_steps > 0 else steps
    step_fn = make_train_step(cfg, optimizer)
    metrics_path = workdir / "metrics.jsonl"
    _truncate_metrics(metrics_path, start)
    loss = math.nan
    bar = tqdm(range(start, stop), initial=start, total=steps, desc=workdir.name, leave=False)
    with metrics_path.open("a") as metrics_file:
      for step in bar:
        batch = train_data.batch_at(data, config.seed, step, config.batch_size)
        state, metrics = step_fn(state, batch)
        done = step + 1
        if done % config.log_every == 0 or done == stop:
          loss, gnorm = float(metrics["loss"]), float(metrics["grad_norm"])
          bar.set_postfix(loss=f"{loss:.4f}")
          logging.info("step %d loss %.4f grad_norm %.3f", done, loss, gnorm)
          metrics_file.write(json.dumps({"step": done, "loss": loss, "grad_norm": gnorm}) + "\n")
          metrics_file.flush()
        if done % config.save_every == 0 or done == stop:
          mngr.save(done, args=ocp.args.StandardSave(state), force=True)
          if config.export_checkpoints:
            export_model(
              workdir / "hf_ckpts" / f"step_{done}",
              cfg,
              state["params"],
              tokenizer_dir,
              config,
              {"step": done},
            )
    mngr.wait_until_finished()
  if stop < steps:
    logging.info("halted after step %d of %d (halt_after_steps); rerun to resume", stop, steps)
    return TrainResult(workdir / "checkpoints", start, stop, loss)
  out = export_model(
    workdir / "hf",
    cfg,
    state["params"],
    tokenizer_dir,
    config,
    {"step": steps, "num_params": num_params(state["params"]), "final_loss": loss},
  )
  return TrainResult(out, start, stop, loss)


def _truncate_metrics(path: Path, step: int) -> None:
  """Drops metric rows past the resumed step (written before an interruption), so none repeat."""
  if path.exists():
    rows = [r for r in path.read_text().splitlines() if r.strip() and json.loads(r)["step"] <= step]
    path.write_text("".join(r + "\n" for r in rows))


def synthetic_config(config: ConfigDict) -> SyntheticConfig:
  raw = config.synthetic.to_dict()
  try:
    return SyntheticConfig(**{k: tuple(v) if isinstance(v, list) else v for k, v in raw.items()})
  except TypeError as e:
    raise TrainConfigError(f"bad synthetic settings {raw}: {e}")


def prepare_tokenizer(config: ConfigDict, workdir: Path, train_problems) -> Path:
  """The given tokenizer_dir, or one built (once) from the synthetic train split into workdir."""
  if config.tokenizer_dir:
    return Path(config.tokenizer_dir)
  from experiments.tasks.synthetic_tokenizer import build_tokenizer

  tok_dir = Path(workdir) / "tokenizer"
  if not (tok_dir / "tokenizer.json").exists():
    build_tokenizer(tok_dir, train_problems, config.tokenizer_vocab_size)
  return tok_dir


def evaluate(model_dir: Path, config: ConfigDict) -> dict[str, Any]:
  """Greedy accuracy on the synthetic test split, through the decode loop.

  Written to eval.json beside the model dir (in the workdir), keeping the HF dir itself pure.
  """
  problems = generate_problems(synthetic_config(config), config.eval_problems, "test")
  lm = load_model(model_dir)
  completions = decode_greedy(
    lm, problems, batch_size=config.eval_batch_size, max_new_tokens=config.max_new_tokens
  )
  result = {"split": "test", "n": len(problems), "accuracy": accuracy(problems, completions)}
  (model_dir.parent / "eval.json").write_text(json.dumps(result) + "\n")
  logging.info("greedy test accuracy of %s: %.3f (n=%d)", model_dir, result["accuracy"], len(problems))
  return result


def run_teacher(config: ConfigDict) -> Path:
  workdir = Path(config.workdir)
  problems = generate_problems(synthetic_config(config), config.num_train_problems, "train")
  tok_dir = prepare_tokenizer(config, workdir, problems)
  result = train(config, [(prompt_text(p), target_text(p)) for p in problems], tok_dir, workdir)
  if result.last_step == config.steps and config.eval_problems > 0:
    evaluate(result.out_dir, config)
  return result.out_dir


def quiet_orbax() -> None:
  """Orbax logs several INFO lines per save; keep its warnings, drop the chatter."""
  logging.get_absl_handler().addFilter(
    lambda record: record.levelno >= logging.converter.STANDARD_WARNING or "orbax" not in record.pathname
  )


def main(argv):
  del argv
  quiet_orbax()
  print(report_user_errors(lambda: run_teacher(config_value(_CONFIG, "configs/train_teacher.py"))))


if __name__ == "__main__":
  # Defined only when run as a program, so importing this module (tests, distill) adds no flags.
  _CONFIG = config_flags.DEFINE_config_file("config", None, "training config file (configs/train_teacher.py)")
  app.run(main, flags_parser=parse_flags)  # bad flags: `error: ...`, exit 2

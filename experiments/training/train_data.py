"""Fixed-shape training arrays and a stateless batch order, so a resumed run sees the same data.

Each example is (prompt, target) text. Tokens are `tok(prompt)` (with <bos>) followed by
`tok(target)` (no specials) and <eos> -- the same split the decode loop sees at evaluation, where
the prompt is tokenized alone and the model continues it. The loss covers target tokens and <eos>.

The batch at step s is a pure function of (seed, s): epoch e = s // steps_per_epoch is shuffled
with rng(seed, e). Nothing to save in a checkpoint beyond the step number. To waste less compute
on padding, each run of `group` consecutive batches is drawn from one shuffled chunk sorted by
length, and a batch is trimmed to its longest row rounded up to `length_bucket` (a handful of
compiled shapes instead of one padded to seq_len).
"""

from __future__ import annotations

import dataclasses
from typing import Sequence

import numpy as np

from model.errors import UserError


class TrainDataError(UserError):
  """The examples cannot be packed into the requested shapes."""


@dataclasses.dataclass(frozen=True)
class TokenizedData:
  tokens: np.ndarray  # [N, S] int32, padded with pad_id
  loss_mask: np.ndarray  # [N, S] float32, 1 where the token is a target (predicted from the one before)
  lengths: np.ndarray  # [N] int32 tokens per example (prompt + target + eos)

  @property
  def num_examples(self) -> int:
    return self.tokens.shape[0]


def tokenize_examples(tokenizer, examples: Sequence[tuple[str, str]], seq_len: int) -> TokenizedData:
  """(prompt, target) texts -> padded arrays; an example longer than seq_len is an error."""
  if not examples:
    raise TrainDataError("no training examples")
  eos, pad = tokenizer.eos_token_id, tokenizer.pad_token_id
  if eos is None:
    raise TrainDataError("the tokenizer has no eos token; targets must end with one")
  pad = eos if pad is None else pad
  prompts = tokenizer([p for p, _ in examples], add_special_tokens=True)["input_ids"]
  targets = tokenizer([t for _, t in examples], add_special_tokens=False)["input_ids"]
  tokens = np.full((len(examples), seq_len), pad, np.int32)  # [N, S]
  mask = np.zeros((len(examples), seq_len), np.float32)  # [N, S]
  lengths = np.zeros((len(examples),), np.int32)  # [N]
  for i, (p, t) in enumerate(zip(prompts, targets)):
    row = list(p) + list(t) + [eos]
    lengths[i] = len(row)
    if len(row) > seq_len:
      continue
    tokens[i, : len(row)] = row
    mask[i, len(p) : len(row)] = 1.0
  longest = int(lengths.max())
  if longest > seq_len:
    raise TrainDataError(
      f"the longest example has {longest} tokens but seq_len={seq_len}; "
      f"raise seq_len to at least {longest} (or shorten the problems)"
    )
  return TokenizedData(tokens=tokens, loss_mask=mask, lengths=lengths)


def steps_per_epoch(num_examples: int, batch_size: int) -> int:
  if num_examples < batch_size:
    raise TrainDataError(
      f"{num_examples} examples are fewer than batch_size={batch_size}; "
      "generate more examples or lower batch_size"
    )
  return num_examples // batch_size  # the remainder of each shuffled epoch is skipped


def batch_indices(seed: int, step: int, lengths: np.ndarray, batch_size: int, group: int = 16) -> np.ndarray:
  """Example indices [batch_size] of the batch at `step` (0-based), independent of history."""
  spe = steps_per_epoch(len(lengths), batch_size)
  epoch, within = divmod(step, spe)
  order = np.random.default_rng([seed, epoch]).permutation(len(lengths))[: spe * batch_size]
  chunk, j = divmod(within, group)
  members = order[chunk * batch_size * group : (chunk + 1) * batch_size * group]
  members = members[np.argsort(lengths[members], kind="stable")]  # similar lengths share a batch
  k = np.random.default_rng([seed, epoch, chunk]).permutation(len(members) // batch_size)[j]
  return members[k * batch_size : (k + 1) * batch_size]


def batch_at(
  data: TokenizedData, seed: int, step: int, batch_size: int, group: int = 16, length_bucket: int = 32
) -> dict[str, np.ndarray]:
  """The batch at `step`: tokens and loss_mask [B, L], L = longest row rounded up to length_bucket."""
  idx = batch_indices(seed, step, data.lengths, batch_size, group)
  seq_len = data.tokens.shape[1]
  L = min(seq_len, -(-int(data.lengths[idx].max()) // length_bucket) * length_bucket)
  return {"tokens": data.tokens[idx, :L], "loss_mask": data.loss_mask[idx, :L]}

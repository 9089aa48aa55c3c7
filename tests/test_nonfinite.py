"""A NaN in a model's weights: affected rows stop and are flagged, never become tokens or answers."""

import dataclasses

import numpy as np
import pytest

from decode.api import DecodeRequest
from decode.host.guided import GuidedDecoder

PROMPTS = ["ab", "what is 3+4?", "hello zz", "qq"]


def _with_nan_embedding(lm, token_id: int):
  """The same model with one NaN in the embedding row of `token_id` (a corrupt checkpoint)."""
  params = dict(lm.params["params"])
  emb = dict(params["embed_tokens"])
  emb["embedding"] = emb["embedding"].at[token_id, 0].set(np.nan)
  params["embed_tokens"] = emb
  return dataclasses.replace(lm, params={"params": params})


@pytest.mark.parametrize("with_teacher", [False, True], ids=["student_only", "guided"])
def test_rows_that_read_the_nan_stop_and_are_flagged(pair, with_teacher):
  s, t = pair
  z = s.tokenizer.convert_tokens_to_ids("z")
  clean = GuidedDecoder(s, t if with_teacher else None, step_delimiter="e")
  broken = GuidedDecoder(_with_nan_embedding(s, z), t if with_teacher else None, step_delimiter="e")
  ids = clean.encode(PROMPTS)
  policies = ["never", "step:1", "never", "always"] if with_teacher else "never"
  want = clean.generate(DecodeRequest(ids, policies, max_new_tokens=24))
  got = broken.generate(DecodeRequest(ids, policies, max_new_tokens=24))
  flagged = 0
  for prompt, w, g in zip(ids, want, got):
    # The student's logits are NaN from the first position that reads z (in the prompt, or after it
    # wrote z); the row stops at the first of those positions that the student (not the teacher) writes.
    start = 0 if z in prompt else (w.token_ids.index(z) + 1 if z in w.token_ids else len(w.token_ids))
    k = next((i for i in range(start, len(w.token_ids)) if w.authors[i] == 0), None)
    if k is None:
      assert g.error is None and (g.token_ids, g.authors) == (w.token_ids, w.authors)
    else:
      assert g.error == f"non-finite logits at position {k}" and g.token_ids == w.token_ids[:k]
      flagged += 1
  assert flagged >= 1
  assert all(r.error is None for r in want)


def test_a_flagged_row_is_never_scored(pair, tmp_path):
  from experiments.sweep.runner import DecodeSettings, SweepRunner
  from experiments.sweep.store import ResultsStore
  from experiments.tasks.datasets import Problem

  s, _ = pair
  z = s.tokenizer.convert_tokens_to_ids("z")
  dec = GuidedDecoder(_with_nan_embedding(s, z), None, step_delimiter="e")
  runner = SweepRunner(
    dec, ResultsStore(tmp_path / "r.jsonl"), DecodeSettings(batch_size=2, max_len=64, max_new_tokens=8)
  )
  problem = Problem("p/0", "zz", "5", None, "t")
  res = dec.generate(DecodeRequest(dec.encode(["zz 5"]), "never", max_new_tokens=8))[0]
  from decode.core.policy import parse_policy
  from experiments.sweep.grid import ModelEntry, SweepRow

  row = SweepRow("t", problem, "zz", ModelEntry("s", "x"), None, parse_policy("never"), 0)
  rec = runner.record(row, res, "plain")
  assert (
    rec["error"].startswith("non-finite logits") and rec["prediction"] is None and rec["correct"] is False
  )

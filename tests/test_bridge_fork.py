"""The text bridge's caches: fork sweeps across tokenizers, and the in-process teacher's row caches.

Fork mode: a cross-tokenizer timing sweep (the sweep runner over a BridgeDecoder) in fork mode writes
the same rows, every field, as in plain mode, for timings inside and beyond a row's last step.
Row caches: the in-process teacher keeps each row's cache between boundaries; rows equal those of a
teacher that re-reads everything, and the tokens read follow from the text each call adds.
"""

import bridge_models
import pytest

from decode.api import DecodeRequest
from decode.bridge.decoder import BridgeDecoder
from decode.bridge.pairing import make_decoder
from decode.bridge.teachers import LocalTeacher
from decode.core.policy import parse_policy
from decode.core.state import TEACHER
from experiments.sweep.grid import ModelEntry, expand_grid
from experiments.sweep.runner import DecodeSettings, SweepRunner
from experiments.sweep.store import ResultsStore
from experiments.tasks.datasets import Problem
from model.hf_import import load_model

MAX_NEW = 16
# Rows have about four steps in 16 tokens (a delimiter every 4th word): step:6 and step:9 begin after
# most rows' last step (fork mode copies the base run), step:2..step:4 fork mid-row.
PROMPTS = bridge_models.PROMPTS + ["w12 w50 w6 ", "w21 w22\nw23 "]
POLICIES = ("never", "step:1", "step:2", "step:3", "step:4", "step:2,n=2", "hint:3,m=2", "step:6", "step:9")


@pytest.fixture(scope="module")
def models(tmp_path_factory):
  s_dir, t_dir = bridge_models.make_bridge_pair(tmp_path_factory.mktemp("bridge_fork"))
  return load_model(s_dir), load_model(t_dir)


def _sweep(decoder, out, fork: bool) -> tuple[dict, SweepRunner]:
  problems = [Problem(f"p/{i}", p, "0", None, "bridge") for i, p in enumerate(PROMPTS)]
  rows = expand_grid(
    "bridge",
    problems,
    {p.problem_id: p.question for p in problems},
    [ModelEntry("s", "/s")],
    "t",
    [parse_policy(p) for p in POLICIES],
    [0],
  )
  longest = max(len(p) for p in decoder.encode(PROMPTS))
  settings = DecodeSettings(
    batch_size=4, max_len=decoder.buffer_length(longest, MAX_NEW), max_new_tokens=MAX_NEW
  )
  runner = SweepRunner(decoder, ResultsStore(out), settings, fork=fork, progress=False)
  runner.run(rows)
  return runner.store.rows, runner


def test_fork_sweep_across_tokenizers_equals_plain(models, tmp_path):
  student, teacher = models
  prompts = {f"p/{i}": p for i, p in enumerate(PROMPTS)}
  decoder = make_decoder(*models)
  assert isinstance(decoder, BridgeDecoder) and decoder.can_fork
  fork, _ = _sweep(decoder, tmp_path / "fork.jsonl", fork=True)
  plain, _ = _sweep(decoder, tmp_path / "plain.jsonl", fork=False)
  assert fork.keys() == plain.keys() and len(fork) == 6 * len(POLICIES)
  # every field equal but the mode and what the teacher read: a forked row's teacher starts from its
  # cache of the problem's prompt + student run (as the one loop's fork rows do)
  cost = ("mode", "teacher_read", "teacher_prefilled")
  for rid, row in fork.items():
    other = plain[rid]
    assert row.keys() == other.keys(), rid
    assert {k: v for k, v in row.items() if k not in cost} == {
      k: v for k, v in other.items() if k not in cost
    }, rid
    if row["mode"] == "fork" and row["round_trips"]:
      # The first teacher call reads one token (the one the prefill wrote past the row's text) where
      # plain mode reads its whole prompt: the prompt text + the student's run up to step K.
      j = row["authors"].index(TEACHER)
      text = prompts[row["problem_id"]] + student.tokenizer.decode(row["token_ids"][:j])
      first = len(teacher.tokenizer(text)["input_ids"])
      assert row["teacher_read"] == other["teacher_read"] - first + 1, rid
    else:
      assert row["teacher_read"] == other["teacher_read"], rid
  modes = {r["mode"] for r in fork.values()}
  assert {"base", "fork", "copied", "plain"} <= modes  # step:1 rows run plain in fork mode too
  forked = [r for r in fork.values() if r["mode"] == "fork"]
  assert any(TEACHER in r["authors"] and r["authors"][-1] == 0 for r in forked)  # the student went on
  assert any(parse_policy(r["policy"]).step_lo >= 6 for r in fork.values() if r["mode"] == "copied")


def _teacher_calls(row) -> list[int]:
  """Where each teacher call's text begins: one call per teacher step, or per hint (no empty trips here)."""
  starts, prev = [], (None, None)
  for i, (a, s) in enumerate(zip(row.authors, row.step_ids)):
    if a == TEACHER and prev != (TEACHER, s):
      starts.append(i)
    prev = (a, s)
  return starts


def _tokens_read(row, prompt_tokens: int) -> int:
  """The oracle for a teacher that keeps the row's cache (word-level tokenizers: one teacher token
  per student token): its first call reads the prompt and the student's text before it; each later
  call, the one token its last call wrote but did not feed, and the student's tokens since."""
  calls = _teacher_calls(row)
  read, last = (prompt_tokens if calls else 0), None
  for i in calls:
    since = row.authors[(last or 0) : i].count(0)
    read += since + (last is not None)
    last = i
  return read


@pytest.mark.parametrize("policy", ["step:1,n=2", "always", "hint:2,m=2", "step:2"])
def test_the_teacher_keeps_each_rows_cache(models, policy):
  student, teacher = models
  # the same teacher, reading each call's whole prompt (the bridge before row caches)
  keeping = BridgeDecoder(student, LocalTeacher(teacher))
  rereading = BridgeDecoder(student, LocalTeacher(teacher, keep_caches=False))
  request = DecodeRequest(
    keeping.encode(bridge_models.PROMPTS), policy, MAX_NEW, texts=bridge_models.PROMPTS, batch_size=4
  )
  kept, reread = keeping.generate(request), rereading.generate(request)
  cost = ("teacher_read", "teacher_prefilled")
  for a, b, text in zip(kept, reread, bridge_models.PROMPTS):
    assert {k: v for k, v in vars(a).items() if k not in cost} == {
      k: v for k, v in vars(b).items() if k not in cost
    }
    assert a.round_trips == len(_teacher_calls(a))
    assert a.teacher_read == _tokens_read(a, len(teacher.tokenizer(text)["input_ids"]))
    assert a.teacher_prefilled == a.teacher_read + a.teacher_tokens
    assert a.teacher_read < b.teacher_read if a.round_trips > 1 else a.teacher_read == b.teacher_read
  if policy in ("step:1,n=2", "always"):
    assert any(r.round_trips > 1 for r in kept)


def test_a_call_starts_from_rows_of_several_calls_caches(models):
  """Rows of two earlier calls' caches (other buffer lengths), a row cut back, and a row with no
  cache, in one call: the same tokens as a call from nothing, each row reusing exactly the common
  prefix of what its cache held and what it now is."""
  from decode.bridge.row_caches import CachedRow, starting_rows
  from decode.host.guided import GuidedDecoder

  dec = GuidedDecoder(models[0])
  p = dec.encode(bridge_models.PROMPTS)
  (a0, a1), first = dec.generate_keeping_caches(DecodeRequest(p[:2], "never", 6, max_len=32))
  (b0,), second = dec.generate_keeping_caches(DecodeRequest(p[2:3], "never", 9, max_len=48))
  prefixes = [a0.token_ids[:2] + [a1.token_ids[0]], a1.token_ids, b0.token_ids, []]  # row 0 cut back
  held = [CachedRow(first, 0), CachedRow(first, 1), CachedRow(second, 0), None]
  rows = [list(q) + list(x) for q, x in zip(p, prefixes)]
  caches, reused = starting_rows(held, rows, 4, 64)
  brute = []
  for h, r in zip(held, rows):
    k = 0
    while h is not None and k < min(len(h.tokens), len(r)) - 1 and h.tokens[k] == r[k]:
      k += 1
    brute.append(k)
  assert reused == brute and reused[0] == len(p[0]) + 2 and reused[3] == 0
  request = DecodeRequest(p, "never", 12, prefixes=prefixes, max_len=64, batch_size=4)
  assert [r.token_ids for r in dec.generate(request.replace(caches=caches))] == [
    r.token_ids for r in dec.generate(request)
  ]

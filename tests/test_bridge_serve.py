"""`decode.generate` with a teacher of another tokenizer: in process and served (`decode.serve`).

The two tiny models hold the same words under different ids, so text round-trips exactly and the
bridge must equal the brute-force reference token for token. The server runs in a subprocess on a
free port of 127.0.0.1, stops when the module's tests end, and on its own after 5 idle minutes.
"""

import json
import os
import subprocess
import sys
import urllib.request

import bridge_models
import pytest
from bridge_reference import bridge_greedy
from served import serve

from decode.bridge.teachers import CompletionRequest, LocalTeacher
from decode.errors import TeacherServerError
from decode.serving.client import ServedTeacher
from model.hf_import import load_model

MAX_NEW = 16
KEY_ENV = "FSG_BRIDGE_TEST_KEY"
KEY = "test-key-1"
# (prompt, policy, teacher steps, hint tokens) per prompts-file line: one CLI call decodes them all.
LINES = [(p, f"step:{k}", {k}, None) for k in (1, 2) for p in bridge_models.PROMPTS] + [
  (bridge_models.PROMPTS[1], "hint:2,m=2", {2}, 2),
  (bridge_models.PROMPTS[2], "never", set(), None),
  (bridge_models.PROMPTS[3], "always", set(range(1, MAX_NEW + 1)), None),
]


@pytest.fixture(scope="module")
def dirs(tmp_path_factory):
  return bridge_models.make_bridge_pair(tmp_path_factory.mktemp("bridge"))


@pytest.fixture(scope="module")
def prompts_file(tmp_path_factory):
  f = tmp_path_factory.mktemp("prompts") / "p.jsonl"
  f.write_text("".join(json.dumps({"prompt": p, "policy": pol}) + "\n" for p, pol, _, _ in LINES))
  return f


def _generate(student, teacher, prompts_file, *extra, env=None):
  return subprocess.run(
    [sys.executable, "-m", "decode.generate", "--student", student, "--teacher", teacher]
    + ["--prompts", prompts_file, "--max-new-tokens", str(MAX_NEW), *extra],
    capture_output=True,
    text=True,
    env={**os.environ, **(env or {})},
    timeout=300,
  )


@pytest.fixture(scope="module")
def in_process_rows(dirs, prompts_file):
  r = _generate(*map(str, dirs), prompts_file)
  assert r.returncode == 0, r.stderr
  return [json.loads(line) for line in r.stdout.splitlines()]


@pytest.fixture(scope="module")
def server(dirs):
  """(URL, process) of `python -m decode.serve` for the teacher, with an API key from the environment."""
  with serve(dirs[1], "--batch-wait-ms", "100", "--api-key-env", KEY_ENV, env={KEY_ENV: KEY}) as running:
    yield running


def _health(url):
  req = urllib.request.Request(
    url.removesuffix("/v1") + "/health", headers={"Authorization": f"Bearer {KEY}"}
  )
  with urllib.request.urlopen(req, timeout=10) as resp:
    return json.loads(resp.read())


def test_cli_matches_the_reference(dirs, in_process_rows):
  student, teacher = load_model(dirs[0]), load_model(dirs[1])
  assert len(in_process_rows) == len(LINES)
  for (prompt, policy, steps, hint), row in zip(LINES, in_process_rows):
    ids, authors = bridge_greedy(
      student, teacher, prompt, teacher_steps=steps, max_new=MAX_NEW, hint_tokens=hint
    )
    assert row["policy"] == policy and row["prompt"] == prompt
    assert row["completion"] == student.tokenizer.decode(ids, skip_special_tokens=True), (policy, prompt)
    assert (row["token_ids"], row["authors"]) == (ids, authors), (policy, prompt)
    assert row["teacher_tokens"] == authors.count(1) and row["student_tokens"] == authors.count(0)
    assert row["round_trips"] == len(row["intervention_steps"])
    assert row["teacher_read"] >= row["round_trips"]  # each call reads at least the prompt
  for k in (1, 2):  # the teacher wrote step K and the student went on after it, in several rows
    mixed = [
      r for r in in_process_rows if r["policy"] == f"step:{k}" and r["authors"][-1] == 0 and 1 in r["authors"]
    ]
    assert len(mixed) >= 2, k


def test_served_teacher_gives_the_same_rows(dirs, prompts_file, in_process_rows, server):
  url, _ = server
  r = _generate(str(dirs[0]), url, prompts_file, "--teacher-api-key-env", KEY_ENV, env={KEY_ENV: KEY})
  assert r.returncode == 0, r.stderr
  served = [json.loads(line) for line in r.stdout.splitlines()]
  # The same rows; the in-process teacher keeps each row's cache between boundaries, the server reads
  # every request's whole prompt: tokens read differ where a row went back to its teacher.
  cost = ("teacher_read", "teacher_prefilled")
  assert [{k: v for k, v in r.items() if k not in cost} for r in served] == [
    {k: v for k, v in r.items() if k not in cost} for r in in_process_rows
  ]
  for a, b in zip(served, in_process_rows):
    assert (
      a["teacher_read"] > b["teacher_read"]
      if a["round_trips"] > 1
      else a["teacher_read"] == b["teacher_read"]
    )


def test_one_boundarys_requests_are_one_batch(dirs, server, monkeypatch):
  url, _ = server
  monkeypatch.setenv(KEY_ENV, KEY)
  client = ServedTeacher(url, api_key_env=KEY_ENV)
  requests = [CompletionRequest(p, max_tokens=6, stop=("\n",)) for p in bridge_models.PROMPTS]
  before = _health(url)
  answers = client.complete(requests)
  after = _health(url)
  assert after["requests"] - before["requests"] == 4 and after["batches"] - before["batches"] == 1
  assert answers == LocalTeacher(load_model(dirs[1])).complete(requests)
  assert all(a.finish_reason == "stop" and a.stop_reason == "\n" for a in answers if a.completion_tokens < 6)


def test_bad_requests_and_keys_are_clear_errors(server, monkeypatch):
  url, _ = server
  monkeypatch.delenv(KEY_ENV, raising=False)
  with pytest.raises(TeacherServerError, match=f"refused the request \\(HTTP 401.*{KEY_ENV}"):
    ServedTeacher(url, api_key_env=KEY_ENV)
  monkeypatch.setenv(KEY_ENV, KEY)
  client = ServedTeacher(url, api_key_env=KEY_ENV)
  with pytest.raises(TeacherServerError, match="HTTP 400.*context"):
    client.complete([CompletionRequest("w1 " * 200, max_tokens=4)])
  with pytest.raises(TeacherServerError, match="HTTP 404.*does not exist"):
    ServedTeacher(url, model="gpt-5", api_key_env=KEY_ENV).complete([CompletionRequest("w1 ", max_tokens=1)])


def test_down_server_is_one_line_and_exit_2(dirs, prompts_file):
  import socket

  with socket.socket() as s:  # a port nobody listens on
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
  url = f"http://127.0.0.1:{port}/v1"
  r = _generate(str(dirs[0]), url, prompts_file, "--teacher-retries", "1")
  assert r.returncode == 2 and r.stdout == "" and "Traceback" not in r.stderr, r.stderr
  (line,) = r.stderr.strip().splitlines()
  assert line.startswith(f"error: the teacher server at {url} is not answering") and "decode.serve" in line


def test_sweep_rows_through_the_bridge(dirs, server, tmp_path, monkeypatch):
  """A sweep whose teacher has another tokenizer: in process (teacher.path) and served (teacher.url)
  give the same rows, with the bridge's costs recorded; calibrated triggers work on its never rows."""
  from ml_collections import ConfigDict

  from configs.base import base_config
  from experiments.sweep.run import run_sweep

  url, _ = server
  monkeypatch.setenv(KEY_ENV, KEY)

  def config(out, **teacher):
    c = base_config()
    c.output_dir = str(out)
    c.task.num_problems = 3
    c.students = [ConfigDict(dict(name="s", path=str(dirs[0]), checkpoint=None))]
    c.teacher.update(name="t", **teacher)
    c.policies = ("never", "step:1", "step:2", "entropy:q=0.5")
    c.batch_size = 4
    c.max_new_tokens = 12
    return c

  run_sweep(config(tmp_path / "local", path=str(dirs[1])), progress=False)
  run_sweep(config(tmp_path / "served", url=url, api_key_env=KEY_ENV), progress=False)
  rows = [
    {r["row_id"]: r for r in map(json.loads, (tmp_path / d / "results.jsonl").read_text().splitlines())}
    for d in ("local", "served")
  ]
  assert rows[0].keys() == rows[1].keys() and len(rows[0]) == 3 * 4
  keys = ("token_ids", "authors", "completion", "teacher_tokens", "round_trips", "threshold", "mode")
  for rid, a in rows[0].items():
    assert {k: a[k] for k in keys} == {k: rows[1][rid][k] for k in keys}, rid
    assert (a["round_trips"] > 0) == (1 in a["authors"])
    # the in-process teacher keeps a row's cache between its boundaries, and a forked row's starts from
    # its cache of the problem's prompt + student run; the server reads every prompt whole
    served_read, kept = rows[1][rid]["teacher_read"], a["round_trips"] > 1 or a["mode"] == "fork"
    assert a["teacher_read"] < served_read if kept and a["round_trips"] else a["teacher_read"] == served_read
  assert {r["mode"] for r in rows[0].values()} >= {"base", "plain"}  # bridged sweeps fork too
  assert any(r["round_trips"] for r in rows[0].values() if r["policy"] == "step:1")

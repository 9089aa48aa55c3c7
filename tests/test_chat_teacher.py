"""Chat-served teachers: `python -m decode.serve` answers /v1/chat/completions in the model's own chat
template, `ServedTeacher(api="chat")` sends the problem and the solution so far in one documented
template, and each bridged row records the hash of the exact text its teacher calls sent."""

import hashlib

import bridge_models
import pytest
from served import serve

from decode.api import DecodeRequest
from decode.bridge.decoder import BridgeDecoder
from decode.bridge.teachers import CompletionRequest, LocalTeacher
from decode.serving.client import DEFAULT_CHAT_TEMPLATE, ServedTeacher
from decode.serving.http_handler import RequestError
from decode.serving.server import parse_chat_request
from model.hf_import import load_model

CHAT_TEMPLATE = "{% for m in messages %}w1 {{ m['content'] }}\n{% endfor %}w2 "  # the model's own
TEACHER_TEMPLATE = "{problem}\n{solution}"  # the study's, filled by the client


@pytest.fixture(scope="module")
def pair(tmp_path_factory):
  s_dir, t_dir = bridge_models.make_bridge_pair(tmp_path_factory.mktemp("chat"))
  from transformers import AutoTokenizer

  tok = AutoTokenizer.from_pretrained(t_dir)
  tok.chat_template = CHAT_TEMPLATE
  tok.save_pretrained(t_dir)
  return s_dir, t_dir


@pytest.fixture(scope="module")
def url(pair):
  with serve(pair[1], "--batch-wait-ms", "20") as (address, _):
    yield address


def test_chat_answers_are_the_models_own_template_filled(pair, url):
  teacher = load_model(pair[1])
  client = ServedTeacher(url, api="chat", chat_template=TEACHER_TEMPLATE)
  prompts = [p + "w3 w4\n" for p in bridge_models.PROMPTS]
  requests = [CompletionRequest(p, max_tokens=6, stop=("\n",), solution_start=len(p) - 6) for p in prompts]
  sent = [client.request_text(r) for r in requests]
  assert sent[0] == bridge_models.PROMPTS[0].strip() + "\nw3 w4"  # problem, then the solution so far
  rendered = [
    teacher.tokenizer.apply_chat_template(
      [{"role": "user", "content": m}], tokenize=False, add_generation_prompt=True
    )
    for m in sent
  ]
  assert rendered[0].startswith("w1 ") and rendered[0].endswith("w2 ")
  expected = LocalTeacher(teacher).complete(
    [CompletionRequest(r, max_tokens=6, stop=("\n",)) for r in rendered]
  )
  assert client.complete(requests) == expected


def test_bridged_rows_record_what_their_teacher_was_sent(pair, url):
  client = ServedTeacher(url, api="chat", chat_template=TEACHER_TEMPLATE)
  student = load_model(pair[0])
  decoder = BridgeDecoder(student, client)
  texts = bridge_models.PROMPTS[:2]
  rows = decoder.generate(DecodeRequest(decoder.encode(texts), "step:1", 8, texts=texts))
  for text, row in zip(texts, rows):
    assert row.round_trips == len(row.teacher_requests) >= 1
    first = TEACHER_TEMPLATE.format(problem=text.strip(), solution="")
    assert row.teacher_requests[0] == hashlib.sha256(first.encode()).hexdigest()[:16]


def test_chat_requests_are_checked(pair):
  tok = load_model(pair[0]).tokenizer  # the student's tokenizer has no chat template
  with pytest.raises(RequestError, match="no chat template"):
    parse_chat_request({"messages": [{"role": "user", "content": "w1 "}]}, "m", tok)
  with pytest.raises(RequestError, match="messages"):
    parse_chat_request({"messages": "w1 "}, "m", tok)
  assert "{problem}" in DEFAULT_CHAT_TEMPLATE and "{solution}" in DEFAULT_CHAT_TEMPLATE
  with pytest.raises(Exception, match="problem"):
    ServedTeacher("http://127.0.0.1:9/v1", api="chat", chat_template="no places")


def test_a_sweep_with_a_chat_teacher(pair, url, tmp_path):
  """teacher.api = "chat" in a sweep config: rows through the chat endpoint, each recording what its
  teacher calls sent; the manifest holds the api and template (they define the rows)."""
  import json

  from ml_collections import ConfigDict

  from configs.base import base_config
  from experiments.sweep.run import run_sweep

  c = base_config()
  c.output_dir = str(tmp_path / "out")
  c.task.num_problems = 2
  c.students = [ConfigDict(dict(name="s", path=str(pair[0]), checkpoint=None))]
  c.teacher.update(name="t", url=url, api="chat", chat_template=TEACHER_TEMPLATE)
  c.policies = ("never", "step:1")
  c.batch_size, c.max_new_tokens = 2, 8
  run_sweep(c, progress=False)
  rows = [json.loads(line) for line in (tmp_path / "out" / "results.jsonl").read_text().splitlines()]
  guided = [r for r in rows if r["policy"] == "step:1"]
  assert guided and all(len(r["teacher_requests"]) == r["round_trips"] >= 1 for r in guided)
  manifest = json.loads((tmp_path / "out" / "manifest.json").read_text())
  teacher = manifest["content"]["teacher"]
  assert (teacher["api"], teacher["chat_template"]) == ("chat", TEACHER_TEMPLATE)
  import pandas as pd  # the bridge's costs get a summary.csv column each

  summary = pd.read_csv(tmp_path / "out" / "summary.csv").set_index("policy")
  assert summary.loc["step:1", "mean_round_trips"] >= 1 and summary.loc["never", "mean_round_trips"] == 0
  assert summary.loc["step:1", "mean_teacher_read"] > 0

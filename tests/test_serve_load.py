"""`python -m decode.serve` left running: concurrent clients, some slow or malformed, on 127.0.0.1.

Every well-formed request is answered with the in-process teacher's completion; malformed ones get
their one status (400 / 401 / 413) without the server reading what it was not asked to; a client
that opens a connection and stalls is disconnected after --timeout-s; beyond --max-concurrent
requests in flight the server answers 429 with Retry-After, which a client retries; and the server
is still up at the end. Bounded: a fixed number of requests, each with a timeout.
"""

import concurrent.futures
import http.client
import json
import socket
import time

import bridge_models
import pytest
from served import serve

from decode.bridge.teachers import CompletionRequest, LocalTeacher
from model.hf_import import load_model

KEY_ENV, KEY = "FSG_LOAD_TEST_KEY", "load-key-7"
TIMEOUT_S = 2.0
GOOD = 24  # well-formed requests, sent concurrently


@pytest.fixture(scope="module")
def teacher_dir(tmp_path_factory):
  return bridge_models.make_bridge_pair(tmp_path_factory.mktemp("load"))[1]


@pytest.fixture(scope="module")
def server(teacher_dir):
  """(host, port) of a server with small limits, so a test reaches them."""
  args = ["--api-key-env", KEY_ENV, "--max-concurrent", "4", "--timeout-s", str(TIMEOUT_S)]
  args += ["--max-body-bytes", "20000", "--batch-wait-ms", "20"]
  with serve(teacher_dir, *args, env={KEY_ENV: KEY}) as (url, _):
    host, port = url.removeprefix("http://").removesuffix("/v1").split(":")
    yield host, int(port)


def _post(addr, body: bytes, headers: dict) -> tuple[int, dict, dict]:
  conn = http.client.HTTPConnection(*addr, timeout=60)
  try:
    conn.request("POST", "/v1/completions", body=body, headers=headers)
    resp = conn.getresponse()
    return resp.status, dict(resp.getheaders()), json.loads(resp.read() or b"{}")
  finally:
    conn.close()


def _completion(addr, prompt: str) -> tuple[str, int]:
  """A well-formed request, retried on 429 as its Retry-After says: (text, 429s seen)."""
  body = json.dumps({"prompt": prompt, "max_tokens": 6, "temperature": 0, "stop": ["\n"]}).encode()
  headers = {"Authorization": f"Bearer {KEY}", "Content-Type": "application/json"}
  busy = 0
  for _ in range(200):
    status, head, answer = _post(addr, body, headers)
    if status != 429:
      assert status == 200, answer
      return answer["choices"][0]["text"], busy
    busy += 1
    time.sleep(min(float(head.get("Retry-After", "1")), 0.2))
  raise AssertionError("still busy after 200 tries")


def _raw(addr, data: bytes) -> bytes:
  """Bytes sent as they are; what the server answers before closing (or b'' on a timeout)."""
  with socket.create_connection(addr, timeout=30) as s:
    s.sendall(data)
    out = b""
    while chunk := s.recv(65536):
      out += chunk
      if b"\r\n\r\n" in out and b"Connection: close" in out:
        break
    return out


def _head(key: str, length: str) -> bytes:
  return (
    f"POST /v1/completions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {key}\r\n"
    f"Content-Length: {length}\r\n\r\n"
  ).encode()


def test_concurrent_good_slow_and_malformed_clients(server, teacher_dir):
  prompts = [bridge_models.PROMPTS[i % 4] + f"w{i} " for i in range(GOOD)]
  expected = [
    c.text
    for c in LocalTeacher(load_model(teacher_dir)).complete(
      [CompletionRequest(p, max_tokens=6, stop=("\n",)) for p in prompts]
    )
  ]
  # Stalled clients: one sends half a request line, one headers and half its declared body.
  stalled = []
  for data in (b"POST /v1/compl", _head(KEY, "100") + b'{"prompt": "w1 "'):
    s = socket.create_connection(server, timeout=30)
    s.sendall(data)
    stalled.append(s)
  bad = {
    "huge declared body": (_head(KEY, str(10**9)), b" 413 "),
    "non-numeric length": (_head(KEY, "lots"), b" 400 "),
    "wrong key, big body unread": (_head("nope", str(10**9)), b" 401 "),
    "not JSON": (_head(KEY, "5") + b"{oops", b" 400 "),
    "garbage request line": (b"\x16\x03\x01 hello\r\n\r\n", b" 400 "),
  }
  with concurrent.futures.ThreadPoolExecutor(GOOD + len(bad)) as pool:
    good = [pool.submit(_completion, server, p) for p in prompts]
    malformed = {k: pool.submit(_raw, server, data) for k, (data, _) in bad.items()}
    answers = [f.result(timeout=240) for f in good]
    replies = {k: f.result(timeout=60) for k, f in malformed.items()}
  assert [text for text, _ in answers] == expected
  assert sum(busy for _, busy in answers) > 0  # the in-flight bound was reached, and retried through
  for k, (_, status) in bad.items():
    assert status in replies[k].split(b"\r\n")[0] + b" ", (k, replies[k][:200])
  # Stalled connections are closed by the server after its timeout, not held open.
  for s in stalled:
    s.settimeout(TIMEOUT_S + 10)
    began = time.monotonic()
    while s.recv(4096):
      pass
    assert time.monotonic() - began < TIMEOUT_S + 10
    s.close()
  assert _completion(server, prompts[0])[0] == expected[0]  # still up and answering

"""A teacher behind an OpenAI-compatible server (vLLM, SGLang, `python -m decode.serve`): completions or chat.

    teacher = ServedTeacher("http://127.0.0.1:8000/v1")
    teacher.complete([CompletionRequest("Q: ...", max_tokens=64, stop=("\\n",))])

With `api="chat"` (GPT-4-class teachers are served behind chat completions only) each request is one
user message: `chat_template` filled with the problem (the student's prompt) and the solution so far,
asking for the next step only, with `stop` at the step delimiter; `request_text` is that message.

Standard library only (urllib.request + concurrent.futures): the requests of one step boundary go
out concurrently, one thread each, and the server batches them. Failures that may pass (no
connection, a timeout, HTTP 429 or 5xx) are retried with exponential backoff; once the tries are
spent, or on a request the server rejects, a `TeacherServerError` says in one line what failed and
how to fix it. The API key is read only from an environment variable (never a file or a flag).
"""

from __future__ import annotations

import concurrent.futures
import json
import os
import socket
import time
import urllib.error
import urllib.request
from typing import Sequence

from decode.bridge.teachers import Completion, CompletionRequest
from decode.errors import TeacherServerError
from decode.host.options import ServedTeacherOptions

DEFAULT_KEY_ENV = "OPENAI_API_KEY"
_DEFAULTS = ServedTeacherOptions()
DEFAULT_TIMEOUT_S, DEFAULT_RETRIES = _DEFAULTS.timeout_s, _DEFAULTS.retries
DEFAULT_CHAT_TEMPLATE = _DEFAULTS.chat_template
APIS = ("completions", "chat")
_RETRY_STATUS = {408, 429, 500, 502, 503, 504}


def is_url(teacher: str | None) -> bool:
  return isinstance(teacher, str) and teacher.startswith(("http://", "https://"))


class ServedTeacher:
  """Completions from a server; `model` defaults to the first the server lists (/v1/models)."""

  def __init__(
    self,
    url: str,
    *,
    model: str | None = None,
    api_key_env: str = DEFAULT_KEY_ENV,
    timeout_s: float = DEFAULT_TIMEOUT_S,
    retries: int = DEFAULT_RETRIES,
    backoff_s: float = 0.5,
    max_workers: int = 32,
    name: str | None = None,
    api: str = _DEFAULTS.api,
    chat_template: str = DEFAULT_CHAT_TEMPLATE,
  ):
    if api not in APIS:
      raise TeacherServerError(f"teacher api {api!r} is not one of {', '.join(APIS)}")
    if api == "chat" and not ("{problem}" in chat_template and "{solution}" in chat_template):
      raise TeacherServerError("the chat template needs the places {problem} and {solution}")
    self.api, self.chat_template = api, chat_template
    if not is_url(url):
      raise TeacherServerError(
        f"teacher URL {url!r} must start with http:// or https:// (e.g. http://HOST:PORT/v1)"
      )
    if retries < 0 or timeout_s <= 0:
      raise TeacherServerError(f"teacher retries must be >= 0 and timeout > 0, got {retries} and {timeout_s}")
    self.url = url.rstrip("/")
    self.api_key_env, self.timeout_s, self.retries, self.backoff_s = (
      api_key_env,
      timeout_s,
      retries,
      backoff_s,
    )
    self.max_workers = max_workers
    self.model = model or self._first_model()  # also the check that the server is up
    self.name = name or self.model
    self.compiles = 0  # the server's own business

  def _first_model(self) -> str:
    body = self._call("GET", "/models")
    try:
      return str(body["data"][0]["id"])
    except (KeyError, IndexError, TypeError):
      raise TeacherServerError(
        f"the teacher server at {self.url} lists no model at {self.url}/models; name one (--teacher-model / "
        "teacher.model)"
      ) from None

  def complete(self, requests: Sequence[CompletionRequest]) -> list[Completion]:
    """One POST per request, all at once (threads); results in request order."""
    if not requests:
      return []
    workers = min(len(requests), self.max_workers)
    with concurrent.futures.ThreadPoolExecutor(workers, thread_name_prefix="teacher") as pool:
      return list(pool.map(self._one, requests))

  def request_text(self, r: CompletionRequest) -> str:
    """The prompt (completions), or the chat template filled with the problem and the solution."""
    if self.api == "completions":
      return r.prompt
    at = len(r.prompt) if r.solution_start is None else r.solution_start
    return self.chat_template.format(problem=r.prompt[:at].strip(), solution=r.prompt[at:].strip())

  def _one(self, r: CompletionRequest) -> Completion:
    text = self.request_text(r)
    body = {
      "model": self.model,
      **(
        {"prompt": text} if self.api == "completions" else {"messages": [{"role": "user", "content": text}]}
      ),
      "max_tokens": int(r.max_tokens),
      "temperature": float(r.temperature),
      "top_p": float(r.top_p),
      "seed": int(r.seed),
    }
    if r.top_k > 0:
      body["top_k"] = int(r.top_k)  # vLLM and SGLang extension; OpenAI itself has none
    if r.stop:
      body["stop"] = list(r.stop)
    path = "/completions" if self.api == "completions" else "/chat/completions"
    return self._completion(self._call("POST", path, body), r)

  def _completion(self, body: dict, r: CompletionRequest) -> Completion:
    try:
      choice, usage = body["choices"][0], body.get("usage") or {}
      text = choice["text"] if self.api == "completions" else choice["message"]["content"]
      finish = choice.get("finish_reason") or "length"
    except (KeyError, IndexError, TypeError):
      raise TeacherServerError(
        f"the teacher server at {self.url} answered with no completion choice ({str(body)[:200]}); "
        "is it an OpenAI-compatible /v1 endpoint?"
      ) from None
    # Which stop ended it: vLLM says `stop_reason`, SGLang `matched_stop` (None or a token id: EOS).
    # A server that says neither is taken to have stopped at the stop string when one was asked for.
    reason = choice.get("stop_reason", choice.get("matched_stop", r.stop[0] if r.stop else None))
    stop = reason if finish == "stop" and isinstance(reason, str) else None
    return Completion(
      text=text,
      finish_reason="stop" if finish == "stop" else "length",
      stop_reason=stop,
      prompt_tokens=int(usage.get("prompt_tokens", 0)),
      completion_tokens=int(usage.get("completion_tokens", 0)),
    )

  # -- HTTP ----------------------------------------------------------------------------------------
  def _call(self, method: str, path: str, body: dict | None = None) -> dict:
    """JSON in and out, with retries; every failure ends as one TeacherServerError line."""
    headers = {"Content-Type": "application/json", "Accept": "application/json"}
    key = os.environ.get(self.api_key_env, "") if self.api_key_env else ""
    if key:
      headers["Authorization"] = f"Bearer {key}"
    data = json.dumps(body).encode() if body is not None else None
    failure = ""
    for attempt in range(self.retries + 1):
      if attempt:
        time.sleep(self.backoff_s * 2 ** (attempt - 1))
      req = urllib.request.Request(self.url + path, data=data, headers=headers, method=method)
      try:
        with urllib.request.urlopen(req, timeout=self.timeout_s) as resp:
          return json.loads(resp.read().decode("utf-8"))
      except urllib.error.HTTPError as e:
        failure = f"HTTP {e.code}: {_server_message(e)}"
        if e.code in (401, 403):
          raise TeacherServerError(
            f"the teacher server at {self.url} refused the request ({failure}); put its API key in the "
            f"environment variable {self.api_key_env} (teacher.api_key_env / --teacher-api-key-env names it)"
          ) from None
        if e.code not in _RETRY_STATUS:
          raise TeacherServerError(
            f"the teacher server at {self.url} rejected {method} {path} ({failure})"
          ) from None
      except (urllib.error.URLError, socket.timeout, ConnectionError) as e:
        failure = str(getattr(e, "reason", e) or type(e).__name__)
      except (json.JSONDecodeError, UnicodeDecodeError) as e:
        failure = f"a response that is not JSON ({e})"
    raise TeacherServerError(
      f"the teacher server at {self.url} is not answering ({failure}; {self.retries + 1} tries); start it "
      "(python -m decode.serve --model DIR --port N, or vllm serve MODEL) or fix --teacher / teacher.url"
    )


def _server_message(e: urllib.error.HTTPError) -> str:
  """The error message of an OpenAI-style error body, else the reason phrase."""
  try:
    body = json.loads(e.read().decode("utf-8"))
    err = body.get("error", body)
    return str(err.get("message", err) if isinstance(err, dict) else err)[:300]
  except Exception:
    return str(e.reason)

"""Serve a Flax model of this codebase over the OpenAI-compatible completions API.

  python -m decode.serve --model DIR [--host 127.0.0.1] [--port 8000] [--max-batch 16]
      [--batch-wait-ms 5] [--api-key-env NAME] [--exit-after-idle S]

Endpoints: POST /v1/completions (prompt text or a list of texts, max_tokens, temperature, top_p,
top_k, seed, stop), POST /v1/chat/completions (messages, in the model's own chat template; the same
sampling fields), GET /v1/models, GET /health (with counts of requests and batches). The subset vLLM and SGLang serve, so a teacher
served here and one served there are the same to `decode.serving.client.ServedTeacher`. Requests that
arrive within --batch-wait-ms of each other are decoded as one batch through the compiled loop
(decode.serving.batching). With --port 0 the OS picks a free port; the line
`serving NAME at http://HOST:PORT/v1` on stdout says which, once the model is loaded.
Standard library HTTP (http.server; decode.serving.http_handler): the API key is checked (in
constant time) before a body is read, bodies are capped (413), malformed headers answered 400, idle
or stalled connections closed after --timeout-s, and at most --max-concurrent requests are in
flight (429 with Retry-After beyond, which clients retry). Errors a user can fix exit with status 2.
"""

from __future__ import annotations

import argparse
import os
import random
import signal
import sys
import threading
import time
import uuid

from decode.bridge.teachers import CompletionRequest, LocalTeacher
from decode.serving.batching import RequestBatcher
from decode.serving.http_handler import HttpLimits, HttpServer, RequestError, make_handler
from model.errors import UserError, report_user_errors
from model.startup_logs import add_verbose_flag, quiet_startup_logs


def _parser() -> argparse.ArgumentParser:
  p = argparse.ArgumentParser(prog="python -m decode.serve", description=__doc__.split("\n\n")[0])
  p.add_argument("--model", required=True, help="Hugging Face model directory")
  p.add_argument("--host", default="127.0.0.1")
  p.add_argument("--port", type=int, default=8000, help="0: any free port (printed on stdout)")
  p.add_argument("--name", help="model name the API reports (default: the directory's name)")
  p.add_argument("--max-batch", type=int, default=16, help="most requests decoded together")
  p.add_argument("--batch-wait-ms", type=float, default=5.0, help="how long a batch waits for more requests")
  p.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"])
  p.add_argument(
    "--api-key-env", help="environment variable holding the key clients must send (default: none)"
  )
  p.add_argument(
    "--exit-after-idle", type=float, default=0.0, help="exit after this many idle seconds (0: never)"
  )
  d = HttpLimits()
  p.add_argument(
    "--max-body-bytes", type=int, default=d.max_body_bytes, help="larger request bodies get HTTP 413"
  )
  p.add_argument(
    "--max-concurrent",
    type=int,
    default=d.max_concurrent,
    help="completions requests in flight at once; more get HTTP 429 with Retry-After",
  )
  p.add_argument(
    "--timeout-s",
    type=float,
    default=d.timeout_s,
    help="a connection that sends nothing (or stalls mid-request) for this long is closed",
  )
  return p


def parse_request(body, name: str) -> list[CompletionRequest]:
  """The completions request as one CompletionRequest per prompt; RequestError for what we lack."""
  if not isinstance(body, dict):
    raise RequestError("the body must be a JSON object")
  for key, ok in (("n", 1), ("best_of", 1), ("stream", False), ("echo", False), ("logprobs", None)):
    if body.get(key, ok) not in (ok, None):
      raise RequestError(f"{key}={body[key]!r} is not supported by this server")
  if body.get("model") not in (None, name):
    raise RequestError(f"the model {body['model']!r} does not exist; this server has {name!r}", status=404)
  prompts = body.get("prompt")
  prompts = [prompts] if isinstance(prompts, str) else prompts
  if not isinstance(prompts, list) or not prompts or not all(isinstance(p, str) for p in prompts):
    raise RequestError("prompt must be a string or a non-empty list of strings (token ids are not supported)")
  stop = body.get("stop") or []
  stop = [stop] if isinstance(stop, str) else stop
  if not isinstance(stop, list) or not all(isinstance(s, str) and s for s in stop):
    raise RequestError("stop must be a string or a list of non-empty strings")

  def number(key, default, kind, ok):
    value = body.get(key, default)
    if value is None:
      value = default
    if (
      isinstance(value, bool) or not isinstance(value, (int, float)) or (kind is int and value != int(value))
    ):
      raise RequestError(f"{key} must be a number, got {value!r}")
    if not ok(value):
      raise RequestError(f"{key}={value!r} is out of range")
    return kind(value)

  max_tokens = number("max_tokens", 16, int, lambda v: v >= 1)
  temperature = number("temperature", 1.0, float, lambda v: v >= 0)
  top_p = number("top_p", 1.0, float, lambda v: 0 < v <= 1)
  top_k = max(number("top_k", 0, int, lambda v: v >= -1), 0)  # -1 is vLLM's "off"
  seed = body.get("seed")
  seed = random.getrandbits(31) if seed is None else number("seed", 0, int, lambda v: True)
  return [
    CompletionRequest(p, max_tokens, tuple(stop), temperature, top_k, top_p, seed + i)
    for i, p in enumerate(prompts)
  ]


def parse_chat_request(body, name: str, tokenizer) -> list[CompletionRequest]:
  """A chat completions request: its messages in the model's own chat template (with the
  assistant's turn opened), then read as a completions request with that prompt."""
  if not isinstance(body, dict):
    raise RequestError("the body must be a JSON object")
  messages = body.get("messages")
  if (
    not isinstance(messages, list)
    or not messages
    or not all(isinstance(m, dict) and isinstance(m.get("content"), str) and m.get("role") for m in messages)
  ):
    raise RequestError("messages must be a non-empty list of {role, content} objects with text content")
  if not getattr(tokenizer, "chat_template", None):
    raise RequestError(
      "this model has no chat template (its tokenizer_config.json has none); use /v1/completions"
    )
  prompt = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
  rest = {k: v for k, v in body.items() if k != "messages"}
  return parse_request({**rest, "prompt": prompt}, name)


def chat_response(name: str, answers) -> dict:
  """`response`'s completions as chat choices: the assistant's message."""
  out = response(name, answers)
  out.update(id=f"chatcmpl-{uuid.uuid4().hex}", object="chat.completion")
  for c in out["choices"]:
    c["message"] = {"role": "assistant", "content": c.pop("text")}
  return out


def _routes(name: str, tokenizer) -> dict:
  return {
    "/v1/completions": (lambda body: parse_request(body, name), response),
    "/v1/chat/completions": (lambda body: parse_chat_request(body, name, tokenizer), chat_response),
  }


def response(name: str, answers) -> dict:
  return {
    "id": f"cmpl-{uuid.uuid4().hex}",
    "object": "text_completion",
    "created": int(time.time()),
    "model": name,
    "choices": [
      {
        "index": i,
        "text": a.text,
        "finish_reason": a.finish_reason,
        "stop_reason": a.stop_reason,
        "logprobs": None,
      }
      for i, a in enumerate(answers)
    ],
    "usage": {
      "prompt_tokens": sum(a.prompt_tokens for a in answers),
      "completion_tokens": sum(a.completion_tokens for a in answers),
      "total_tokens": sum(a.prompt_tokens + a.completion_tokens for a in answers),
    },
  }


def answer_each(teacher: LocalTeacher, requests) -> list:
  """Completions, or the UserError of a request that cannot be decoded (its prompt fills the
  context): that request's error alone, not its batch's."""
  out, ok = [None] * len(requests), []
  for i, r in enumerate(requests):
    try:
      teacher.encode(r.prompt)
      ok.append(i)
    except UserError as e:
      out[i] = e
  for i, a in zip(ok, teacher.complete([requests[i] for i in ok]) if ok else []):
    out[i] = a
  return out


def serve(args) -> None:
  if args.max_batch < 1 or args.batch_wait_ms < 0 or args.exit_after_idle < 0:
    raise UserError("--max-batch must be >= 1, --batch-wait-ms and --exit-after-idle >= 0")
  if args.max_body_bytes < 1 or args.max_concurrent < 1 or not args.timeout_s > 0:
    raise UserError("--max-body-bytes and --max-concurrent must be >= 1, --timeout-s > 0")
  limits = HttpLimits(args.max_body_bytes, args.max_concurrent, args.timeout_s)
  key = os.environ.get(args.api_key_env, "") if args.api_key_env else ""
  if args.api_key_env and not key:
    raise UserError(f"--api-key-env {args.api_key_env}: that environment variable is empty or unset")

  from model.hf_import import load_model

  model = load_model(args.model, dtype=args.dtype)
  name = args.name or model.name
  teacher = LocalTeacher(model)  # rows padded to a power of two: the same shapes as an in-process teacher
  batcher = RequestBatcher(
    lambda reqs: answer_each(teacher, reqs), max_batch=args.max_batch, wait_s=args.batch_wait_ms / 1000
  )
  try:
    server = HttpServer(
      (args.host, args.port),
      make_handler(batcher, name, key, limits, _routes(name, model.tokenizer)),
    )
  except OSError as e:
    batcher.close()
    raise UserError(f"cannot listen on {args.host}:{args.port} ({e.strerror}); pick another --port") from None
  host, port = server.server_address[:2]
  stop = threading.Event()
  signal.signal(signal.SIGTERM, lambda *_: stop.set())
  threading.Thread(target=server.serve_forever, name="http", daemon=True).start()
  print(f"serving {name} at http://{host}:{port}/v1", flush=True)
  try:
    while not stop.wait(0.2):
      if args.exit_after_idle and time.monotonic() - batcher.last_active > args.exit_after_idle:
        print(f"idle for {args.exit_after_idle:g} s: exiting", flush=True)
        break
  except KeyboardInterrupt:
    pass
  finally:
    server.shutdown()
    server.server_close()
    batcher.close()


def main(argv=None) -> int:
  parser = _parser()
  add_verbose_flag(parser)
  args = parser.parse_args(argv)
  quiet_startup_logs(args.verbose)
  report_user_errors(lambda: serve(args))
  return 0


if __name__ == "__main__":
  sys.exit(main())

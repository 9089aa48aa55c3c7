"""The HTTP side of `python -m decode.serve`: one handler class per server, fit to leave running.

What a request may cost the server before it is trusted is bounded: the API key is checked (in
constant time) before the body is read; a body longer than `max_body_bytes` is refused with 413
unread; a Content-Length that is not a number gets 400; a connection that sends nothing, or stalls
mid-request, for `timeout_s` is closed; beyond `max_concurrent` completions in flight a request gets
429 with Retry-After (the client retries those). Standard library only (http.server): the server
batches through one compiled loop, so its throughput is the device's, not the HTTP layer's.
"""

from __future__ import annotations

import dataclasses
import hmac
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from model.errors import UserError


class RequestError(Exception):
  """A request the API cannot take: answered with HTTP 400 and an OpenAI-style error body."""

  def __init__(self, message: str, status: int = 400):
    super().__init__(message)
    self.status = status


@dataclasses.dataclass(frozen=True)
class HttpLimits:
  max_body_bytes: int = 4 << 20  # 4 MiB: a prompt of ~1M characters
  max_concurrent: int = 64  # completions requests in flight (each waits for its batch)
  timeout_s: float = 30.0  # socket timeout: idle keep-alive connections and stalled requests


class HttpServer(ThreadingHTTPServer):
  """A thread per connection (its socket timeout bounds an idle one); a listen backlog for bursts
  of clients (the standard library's 5 resets the sixth simultaneous connect)."""

  request_queue_size = 128
  daemon_threads = True


def make_handler(batcher, name: str, key: str, limits: HttpLimits, routes: dict):
  """A handler class for one server. `routes`: POST path -> (parse, respond), with
  `parse(body) -> requests` (RequestError for what the API cannot take) and
  `respond(name, answers) -> dict`."""
  in_flight = threading.BoundedSemaphore(limits.max_concurrent)
  expected = f"Bearer {key}".encode()

  class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    timeout = limits.timeout_s  # StreamRequestHandler: the connection's socket timeout

    def log_message(self, *args):  # quiet: one line per request is noise at batch sizes
      pass

    def _send(self, status: int, body: dict, headers: dict | None = None) -> None:
      data = json.dumps(body).encode()
      self.send_response(status)
      self.send_header("Content-Type", "application/json")
      self.send_header("Content-Length", str(len(data)))
      for k, v in (headers or {}).items():
        self.send_header(k, v)
      if self.close_connection:
        self.send_header("Connection", "close")
      self.end_headers()
      self.wfile.write(data)

    def _error(self, status: int, message: str, headers: dict | None = None) -> None:
      kind = "invalid_request_error" if status < 500 else "server_error"
      self._send(status, {"error": {"message": message, "type": kind, "code": status}}, headers)

    def _authorized(self) -> bool:
      batcher.last_active = time.monotonic()
      sent = self.headers.get("Authorization", "").encode("utf-8", "replace")
      if key and not hmac.compare_digest(sent, expected):
        self.close_connection = True  # its body (if any) stays unread
        self._error(401, "missing or wrong API key (Authorization: Bearer ...)")
        return False
      return True

    def _body(self) -> bytes | None:
      """The request body, or None after answering why it cannot be read (400, 413)."""
      declared = self.headers.get("Content-Length") or "0"
      if not declared.strip().isdigit():
        self.close_connection = True
        self._error(400, f"Content-Length must be a number of bytes, got {declared[:40]!r}")
        return None
      length = int(declared)
      if length > limits.max_body_bytes:
        self.close_connection = True
        self._error(413, f"the body is {length} bytes; this server takes at most {limits.max_body_bytes}")
        return None
      return self.rfile.read(length)

    def do_GET(self):
      if not self._authorized():
        return
      if self.path.rstrip("/") in ("/health", "/v1/health"):
        return self._send(200, {"status": "ok", "requests": batcher.requests, "batches": batcher.batches})
      if self.path.rstrip("/") == "/v1/models":
        return self._send(
          200, {"object": "list", "data": [{"id": name, "object": "model", "owned_by": "decode.serve"}]}
        )
      self._error(404, f"no such endpoint: GET {self.path}")

    def do_POST(self):
      if not self._authorized():
        return
      raw = self._body()
      if raw is None:
        return
      route = routes.get(self.path.rstrip("/"))
      if route is None:
        known = ", ".join(sorted(routes))
        return self._error(404, f"no such endpoint: POST {self.path} (this server has {known})")
      parse, respond = route
      try:  # checked before it waits for a slot: a bad request is told so even under load
        requests = parse(json.loads(raw or b"null"))
      except (json.JSONDecodeError, UnicodeDecodeError) as e:
        return self._error(400, f"the body is not JSON ({getattr(e, 'msg', e)})")
      except RequestError as e:
        return self._error(e.status, str(e))
      if not in_flight.acquire(blocking=False):
        busy = f"{limits.max_concurrent} requests in flight; retry shortly"
        return self._error(429, busy, {"Retry-After": "1"})
      try:
        answers = [f.result() for f in [batcher.submit(r) for r in requests]]
      except UserError as e:
        return self._error(400, str(e))
      except Exception as e:  # a bug or a device failure: the client retries, then reports it
        return self._error(500, f"{type(e).__name__}: {e}")
      finally:
        in_flight.release()
      self._send(200, respond(name, answers))

  return Handler

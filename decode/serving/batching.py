"""Concurrent requests -> one batch: the server's handlers wait while one thread decodes.

Each HTTP handler thread submits its requests and waits on their futures; the worker thread takes
the first waiting request, collects whatever else arrives within `wait_s` (up to `max_batch`), and
answers them with one `complete` call (one pass of the compiled loop per stop string). JAX is
called from this one thread only.
"""

from __future__ import annotations

import concurrent.futures
import queue
import threading
import time
from typing import Callable, Sequence

from decode.bridge.teachers import Completion, CompletionRequest


class RequestBatcher:
  def __init__(
    self,
    complete: Callable[[Sequence[CompletionRequest]], list[Completion | Exception]],
    *,
    max_batch: int = 16,
    wait_s: float = 0.005,
  ):
    self.complete, self.max_batch, self.wait_s = complete, max_batch, wait_s
    self._queue: queue.Queue = queue.Queue()
    self._stop = threading.Event()
    self.last_active = time.monotonic()
    self.requests = 0  # requests answered so far
    self.batches = 0  # complete calls that answered them (how well requests were batched)
    self._thread = threading.Thread(target=self._run, name="batcher", daemon=True)
    self._thread.start()

  def submit(self, request: CompletionRequest) -> concurrent.futures.Future:
    future: concurrent.futures.Future = concurrent.futures.Future()
    self.last_active = time.monotonic()
    self._queue.put((request, future))
    return future

  def close(self) -> None:
    self._stop.set()
    self._thread.join(timeout=5)

  def _run(self) -> None:
    while not self._stop.is_set():
      try:
        batch = [self._queue.get(timeout=0.1)]
      except queue.Empty:
        continue
      deadline = time.monotonic() + self.wait_s
      while len(batch) < self.max_batch:
        left = deadline - time.monotonic()
        try:
          batch.append(self._queue.get(timeout=left) if left > 0 else self._queue.get_nowait())
        except queue.Empty:
          break
      try:
        answers = self.complete([r for r, _ in batch])
        for (_, future), answer in zip(batch, answers):  # an exception answers its request alone
          if isinstance(answer, Exception):
            future.set_exception(answer)
          else:
            future.set_result(answer)
      except Exception as e:  # every waiting handler gets the error, the worker goes on
        for _, future in batch:
          future.set_exception(e)
      self.requests += len(batch)
      self.batches += 1
      self.last_active = time.monotonic()

"""Dynamic batching: requests that arrive while the model is busy run together in one signature call.

The knobs are TF Serving's (``session_bundle_config.proto``'s ``BatchingParameters``):

- ``max_batch_size``: rows per signature call. A request larger than it runs alone (never split: its
  answer stays one tensor call, as TF Serving without large-batch splitting).
- ``batch_timeout_micros``: how long a batch that is not full may wait for more rows. The default 0 is
  greedy: an idle server runs a request at once, a busy one batches whatever queued meanwhile; a fixed
  window measured 9x slower at concurrency 1 on this machine (``../shared/stack.md``).
- ``num_batch_threads``: batches in flight at once (each in its own thread: TensorFlow releases the
  GIL while it computes, so the event loop parses the next requests meanwhile).
- ``max_enqueued_batches``: the queue holds at most this many full batches of rows; past that a request
  is refused at once (``QueueFull``, answered 503 with ``Retry-After``) instead of waiting unboundedly.

Everything but the model call runs on the event loop: one thread hop per batch, not per request.
"""

from __future__ import annotations

import asyncio
import collections
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any


def _expire(future: asyncio.Future, timeout: float) -> None:
    if not future.done():
        future.set_exception(TimeoutError(f"no answer within {timeout} s"))


class QueueFull(RuntimeError):
    """The batch queue is at its bound: the server is overloaded, retry later."""


@dataclass(frozen=True)
class BatchingOptions:
    max_batch_size: int = 512
    batch_timeout_micros: int = 0
    num_batch_threads: int = 1
    max_enqueued_batches: int = 64

    def __post_init__(self) -> None:
        for name in ("max_batch_size", "num_batch_threads", "max_enqueued_batches"):
            if getattr(self, name) < 1:
                raise ValueError(f"Batching option {name} must be at least 1, got {getattr(self, name)}.")
        if self.batch_timeout_micros < 0:
            raise ValueError(f"batch_timeout_micros must be >= 0, got {self.batch_timeout_micros}.")


@dataclass
class _Task:
    payload: Any
    rows: int
    future: asyncio.Future
    queued_at: float


class Batcher:
    """Queues tasks (``payload``, ``rows``) and calls ``run_batch(payloads) -> outcomes`` (one outcome
    per payload: a result, or an exception for that task alone) in a worker thread."""

    def __init__(self, run_batch: Callable[[list[Any]], list[Any]], options: BatchingOptions, name: str = "model"):
        self.run_batch = run_batch
        self.options = options
        self.name = name
        self._queue: collections.deque[_Task] = collections.deque()
        self._queued_rows = 0
        self._in_flight = 0
        self._timer: asyncio.TimerHandle | None = None
        self._executor = ThreadPoolExecutor(options.num_batch_threads, thread_name_prefix=f"batch-{name}")
        self.on_batch: Callable[[int], None] | None = None
        self.loop: asyncio.AbstractEventLoop | None = None  # the server's loop, for callers in threads

    @property
    def capacity_rows(self) -> int:
        return self.options.max_enqueued_batches * self.options.max_batch_size

    @property
    def queued_rows(self) -> int:
        return self._queued_rows

    async def submit(self, payload: Any, rows: int, timeout: float | None = None) -> Any:
        """Run ``payload`` in the next batch; returns its outcome or raises its exception
        (``TimeoutError`` after ``timeout`` seconds: a timer, not a task per request)."""
        if self._queued_rows + rows > self.capacity_rows and self._queue:
            raise QueueFull(
                f"{self.name}: {self._queued_rows} rows are queued (bound {self.capacity_rows}); retry shortly."
            )
        loop = asyncio.get_running_loop()
        task = _Task(payload, rows, loop.create_future(), time.monotonic())
        self._queue.append(task)
        self._queued_rows += rows
        self._dispatch(loop)
        if timeout is None:
            return await task.future
        expiry = loop.call_later(timeout, _expire, task.future, timeout)
        try:
            return await task.future
        finally:
            expiry.cancel()

    def _dispatch(self, loop: asyncio.AbstractEventLoop) -> None:
        timeout = self.options.batch_timeout_micros / 1e6
        while self._queue and self._in_flight < self.options.num_batch_threads:
            if timeout and self._queued_rows < self.options.max_batch_size:
                waited = time.monotonic() - self._queue[0].queued_at
                if waited < timeout:  # not full yet: wait out the window of the oldest task
                    if self._timer is None:
                        self._timer = loop.call_later(timeout - waited, self._on_timer, loop)
                    return
            batch = [self._queue.popleft()]
            rows = batch[0].rows
            while self._queue and rows + self._queue[0].rows <= self.options.max_batch_size:
                task = self._queue.popleft()
                batch.append(task)
                rows += task.rows
            self._queued_rows -= rows
            self._in_flight += 1
            running = loop.run_in_executor(self._executor, self.run_batch, [task.payload for task in batch])
            running.add_done_callback(lambda done, batch=batch, rows=rows: self._finish(loop, batch, rows, done))

    def _on_timer(self, loop: asyncio.AbstractEventLoop) -> None:
        self._timer = None
        self._dispatch(loop)

    def _finish(self, loop: asyncio.AbstractEventLoop, batch: list[_Task], rows: int, done: asyncio.Future) -> None:
        self._in_flight -= 1
        if self.on_batch is not None:
            self.on_batch(rows)
        problem = done.exception()
        outcomes = [problem] * len(batch) if problem is not None else done.result()
        for task, outcome in zip(batch, outcomes, strict=True):
            if task.future.done():  # the client went away (cancelled)
                continue
            if isinstance(outcome, BaseException):
                task.future.set_exception(outcome)
            else:
                task.future.set_result(outcome)
        self._dispatch(loop)

    def close(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)

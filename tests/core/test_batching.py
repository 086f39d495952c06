"""The dynamic batcher on its own: greedy batches within max_batch_size, a big request alone, a bounded
queue, per-request errors, the batching window and the request timeout."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest

from solutions_core.serving.batching import Batcher, BatchingOptions, QueueFull


class SlowModel:
    """Records each batch; takes ``seconds`` per call so requests pile up behind it."""

    def __init__(self, seconds: float = 0.02):
        self.seconds = seconds
        self.batches: list[list] = []
        self.lock = threading.Lock()

    def __call__(self, payloads: list) -> list:
        time.sleep(self.seconds)
        with self.lock:
            self.batches.append(list(payloads))
        return [ValueError(f"bad {p}") if p == "bad" else f"answer {p}" for p in payloads]


def run(coroutine):
    return asyncio.run(coroutine)


def test_requests_that_queue_while_the_model_is_busy_share_one_call():
    model = SlowModel()

    async def scenario():
        batcher = Batcher(model, BatchingOptions(max_batch_size=8))
        answers = await asyncio.gather(*(batcher.submit(i, 1) for i in range(20)))
        batcher.close()
        return answers

    answers = run(scenario())
    assert answers == [f"answer {i}" for i in range(20)]
    sizes = [len(batch) for batch in model.batches]
    assert sum(sizes) == 20 and max(sizes) <= 8
    assert sizes[0] == 1, "an idle batcher runs the first request at once (greedy, no window)"
    assert len(sizes) <= 4, f"20 requests in {len(sizes)} calls: they should have been batched"


def test_a_request_larger_than_a_batch_runs_alone_and_errors_are_per_request():
    model = SlowModel()

    async def scenario():
        batcher = Batcher(model, BatchingOptions(max_batch_size=4))
        results = await asyncio.gather(batcher.submit("big", 10), batcher.submit("bad", 1), batcher.submit("ok", 1), return_exceptions=True)
        batcher.close()
        return results

    big, bad, ok = run(scenario())
    assert big == "answer big" and ok == "answer ok"
    assert isinstance(bad, ValueError) and "bad" in str(bad)
    assert ["big"] in model.batches


def test_a_full_queue_refuses_at_once():
    model = SlowModel(seconds=0.05)

    async def scenario():
        batcher = Batcher(model, BatchingOptions(max_batch_size=2, max_enqueued_batches=1))
        results = await asyncio.gather(*(batcher.submit(i, 1) for i in range(10)), return_exceptions=True)
        batcher.close()
        return results

    results = run(scenario())
    refused = [r for r in results if isinstance(r, QueueFull)]
    answered = [r for r in results if isinstance(r, str)]
    assert refused and answered and len(refused) + len(answered) == 10


def test_the_batching_window_waits_for_a_fuller_batch():
    model = SlowModel(seconds=0.001)

    async def scenario():
        batcher = Batcher(model, BatchingOptions(max_batch_size=100, batch_timeout_micros=50_000))
        first = asyncio.ensure_future(batcher.submit("a", 1))
        await asyncio.sleep(0.01)  # inside the window: joins the first request's batch
        second = batcher.submit("b", 1)
        results = await asyncio.gather(first, second)
        batcher.close()
        return results

    assert run(scenario()) == ["answer a", "answer b"]
    assert model.batches == [["a", "b"]]


def test_a_request_past_its_timeout_gets_timeout_error():
    model = SlowModel(seconds=0.3)

    async def scenario():
        batcher = Batcher(model, BatchingOptions())
        with pytest.raises(TimeoutError):
            await batcher.submit("slow", 1, timeout=0.05)
        batcher.close()

    run(scenario())


def test_options_are_checked():
    with pytest.raises(ValueError, match="max_batch_size"):
        BatchingOptions(max_batch_size=0)

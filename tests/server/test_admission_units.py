"""Admission in process: the bounded queue, its deadline, Retry-After from its state, cancelled waiters, metrics."""

from __future__ import annotations

import asyncio
import time

import pytest

from assistant.server.admission import JITTER, Admission
from assistant.server.errors import ApiError
from assistant.server.metrics import Metrics


def sample(metrics: Metrics, name: str, **labels: str) -> float:
    value = metrics.registry.get_sample_value(name, labels)
    return 0.0 if value is None else value


async def test_a_released_slot_goes_to_the_oldest_waiter() -> None:
    gate = Admission(1, queue_size=4, timeout_s=5)
    await gate.acquire()
    order: list[int] = []

    async def wait(n: int) -> None:
        await gate.acquire()
        order.append(n)

    waiters = [asyncio.create_task(wait(n)) for n in range(3)]
    await asyncio.sleep(0.01)
    assert gate.queued == 3 and not order
    for _ in range(3):
        gate.release(0.1)
        await asyncio.sleep(0.01)
    await asyncio.gather(*waiters)
    assert order == [0, 1, 2] and gate.active == 1 and gate.queued == 0
    gate.release()
    assert gate.active == 0
    await gate.acquire()  # a free slot is taken at once
    assert gate.active == 1


async def test_full_queue_is_429_at_once_and_the_deadline_is_429_with_retry_after() -> None:
    metrics = Metrics()
    gate = Admission(2, queue_size=1, timeout_s=0.3, retry_after_s=1, metrics=metrics, jitter=lambda: 0.0)
    await gate.acquire()
    await gate.acquire()
    gate.release(4.0)  # a turn held its slot 4 s: the mean hold time
    await gate.acquire()
    queued = asyncio.create_task(gate.acquire())
    await asyncio.sleep(0.01)
    started = time.monotonic()
    with pytest.raises(ApiError) as full:
        await gate.acquire()
    assert time.monotonic() - started < 0.1
    # expected wait = (1 queued + 1) / 2 slots x 4 s = 4 s
    assert full.value.status == 429 and full.value.code == "server_busy" and "queue_size" in full.value.message
    assert full.value.headers == {"Retry-After": "4", "retry-after-ms": "4000"}
    with pytest.raises(ApiError) as late:
        await queued
    assert time.monotonic() - started >= 0.25 and "queue_timeout_s" in late.value.message
    assert late.value.headers == {"Retry-After": "2", "retry-after-ms": "2000"}  # (0 + 1) / 2 x 4 s
    assert gate.queued == 0 and gate.active == 2
    assert sample(metrics, "assistant_queue_rejections_total", reason="full") == 1
    assert sample(metrics, "assistant_queue_rejections_total", reason="timeout") == 1
    assert sample(metrics, "assistant_queue_wait_seconds_count", outcome="timeout") == 1
    assert sample(metrics, "assistant_queue_wait_seconds_sum", outcome="timeout") >= 0.25
    assert sample(metrics, "assistant_queue_wait_seconds_count", outcome="admitted") == 3
    assert sample(metrics, "assistant_queue_depth") == 0


def test_retry_after_has_jitter_and_a_floor() -> None:
    gate = Admission(1, queue_size=0, retry_after_s=3, jitter=lambda: 0.999)
    assert gate.expected_wait_s() == 3.0  # nothing finished yet: the policy's floor
    headers = gate.retry_after()
    assert int(headers["retry-after-ms"]) == round(3000 * (1 + JITTER * 0.999)) and headers["Retry-After"] == "5"
    spread = {Admission(1, retry_after_s=1).retry_after()["retry-after-ms"] for _ in range(50)}
    assert len(spread) > 10 and all(1000 <= int(ms) <= 1500 for ms in spread)


async def test_a_cancelled_waiter_leaves_the_queue() -> None:
    metrics = Metrics()
    gate = Admission(1, queue_size=1, timeout_s=5, metrics=metrics)
    await gate.acquire()
    waiter = asyncio.create_task(gate.acquire())
    await asyncio.sleep(0.01)
    assert gate.queued == 1 and sample(metrics, "assistant_queue_depth") == 1
    waiter.cancel()
    await asyncio.sleep(0.01)
    assert gate.queued == 0 and sample(metrics, "assistant_queue_depth") == 0
    assert sample(metrics, "assistant_queue_wait_seconds_count", outcome="cancelled") == 1
    second = asyncio.create_task(gate.acquire())  # its place is free again: no 429
    await asyncio.sleep(0.01)
    gate.release()
    await second
    assert gate.active == 1


async def test_a_waiter_cancelled_as_its_slot_arrives_passes_it_on() -> None:
    gate = Admission(1, queue_size=2, timeout_s=5)
    await gate.acquire()
    first = asyncio.create_task(gate.acquire())
    second = asyncio.create_task(gate.acquire())
    await asyncio.sleep(0.01)
    gate.release()  # handed to `first`...
    first.cancel()  # ...which is cancelled before it runs again
    await asyncio.sleep(0.01)
    await second
    assert first.cancelled() and gate.active == 1 and gate.queued == 0

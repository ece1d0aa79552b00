"""Admission: at most `server.max_concurrent_turns` turns at once; past them a bounded FIFO queue with a deadline.

A request that finds every slot taken waits in the queue (at most `server.queue_size` requests) for up to
`server.queue_timeout_s`; a released slot goes straight to the oldest waiter. A full queue answers 429 at once, a
request still waiting at its deadline answers 429; both carry `Retry-After` (whole seconds, as HTTP wants) and
`retry-after-ms` (read first by the openai SDK) computed from the queue's state: the expected wait of a request
joining the end of the queue now, (queued + 1) / slots x the mean time a turn holds its slot (a moving average),
never under `server.retry_after_s`, plus up to 50 % random jitter so that refused clients do not all come back at the
same moment. A queued request whose client leaves, or whose handler is cancelled, leaves the queue at once.
"""

from __future__ import annotations

import asyncio
import math
import random
import time
from collections import deque
from collections.abc import Callable
from typing import Any

from assistant.server.errors import ApiError

JITTER = 0.5  # Retry-After is the expected wait times 1 + JITTER x U[0, 1)
MEAN_WEIGHT = 0.2  # weight of the latest hold time in the moving average


class Admission:
    """`await acquire()` takes a turn slot (waiting in the queue when none is free) or raises a 429 ApiError;
    `release(held_s)` gives it back, to the oldest waiter if any."""

    def __init__(self, limit: int, *, queue_size: int = 0, timeout_s: float = 1.0, retry_after_s: int = 1,
                 metrics: Any = None, jitter: Callable[[], float] = random.random) -> None:
        self.limit = limit
        self.queue_size = queue_size
        self.timeout_s = timeout_s
        self.retry_after_s = retry_after_s
        self.metrics = metrics
        self.jitter = jitter
        self.active = 0
        self.mean_hold_s: float | None = None  # None until a turn has released its slot
        self._waiters: deque[asyncio.Future[None]] = deque()

    @property
    def queued(self) -> int:
        return sum(1 for waiter in self._waiters if not waiter.done())

    def acquire_now(self) -> None:
        """Takes a free slot or raises 429 at once (no queueing)."""
        if self.active >= self.limit:
            self._reject("full")
        self.active += 1
        self._observe_wait("admitted", 0.0)

    async def acquire(self) -> None:
        """Takes a slot, waiting in the queue up to the deadline; 429 when the queue is full or the deadline passes.
        A live waiter exists only while every slot is taken (a release hands its slot on), so a free slot is taken
        at once without jumping the queue."""
        if self.active < self.limit:
            self.active += 1
            self._observe_wait("admitted", 0.0)
            return
        if self.queued >= self.queue_size:
            self._reject("full")
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        self._depth_changed()
        started = time.monotonic()
        try:
            async with asyncio.timeout(self.timeout_s):
                await waiter
        except TimeoutError:
            if _handed_over(waiter):  # the slot came at the deadline itself: keep it
                self._observe_wait("admitted", time.monotonic() - started)
                return
            self._observe_wait("timeout", time.monotonic() - started)
            self._forget(waiter)
            self._reject("timeout")
        except BaseException:  # cancelled: the client left (or the server stops)
            self._observe_wait("cancelled", time.monotonic() - started)
            if _handed_over(waiter):
                self.release()  # handed over as we were cancelled: pass it on
            raise
        finally:
            self._forget(waiter)
        self._observe_wait("admitted", time.monotonic() - started)

    def release(self, held_s: float | None = None) -> None:
        """Gives a slot back: to the oldest live waiter, else to the pool. `held_s` feeds the expected wait."""
        if held_s is not None:
            previous = self.mean_hold_s
            self.mean_hold_s = held_s if previous is None else previous + MEAN_WEIGHT * (held_s - previous)
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)  # the slot stays taken: `active` does not change
                self._depth_changed()
                return
        self.active = max(0, self.active - 1)

    def expected_wait_s(self) -> float:
        """What a request joining the end of the queue now should expect to wait (without jitter)."""
        per_slot = (self.queued + 1) / self.limit * (self.mean_hold_s or 0.0)
        return max(float(self.retry_after_s), per_slot)

    def retry_after(self) -> dict[str, str]:
        wait = self.expected_wait_s() * (1 + JITTER * self.jitter())
        return {"Retry-After": str(max(1, math.ceil(wait))), "retry-after-ms": str(max(1, round(wait * 1000)))}

    def _reject(self, reason: str) -> None:
        if self.metrics is not None:
            self.metrics.queue_rejections.labels(reason).inc()
        if reason == "full":
            message = (f"the server is running its maximum of {self.limit} turns at once and its queue is full "
                       f"({self.queue_size}; server.queue_size); retry after the time in Retry-After")
        else:
            message = (f"no turn slot came free within {self.timeout_s:g} s (server.queue_timeout_s); "
                       "retry after the time in Retry-After")
        raise ApiError(429, message, "server_busy", headers=self.retry_after())

    def _forget(self, waiter: asyncio.Future[None]) -> None:
        if waiter in self._waiters:
            self._waiters.remove(waiter)
        self._depth_changed()

    def _depth_changed(self) -> None:
        if self.metrics is not None:
            self.metrics.queue_depth.set(self.queued)

    def _observe_wait(self, outcome: str, seconds: float) -> None:
        if self.metrics is not None:
            self.metrics.queue_wait.labels(outcome).observe(seconds)


def _handed_over(waiter: asyncio.Future[None]) -> bool:
    return waiter.done() and not waiter.cancelled()

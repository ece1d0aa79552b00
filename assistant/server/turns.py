"""Running one turn for a request: inside a concurrency slot (admission.py), under the policy's turn timeout, as a
task of its own.

The turn is a producer task that puts events on a queue; the HTTP side (JSON or SSE) only reads the queue. Cancelling
the task (client gone, timeout) stops the generation and frees the slot in one place.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

from assistant.events import Error
from assistant.server.limits import run_unless_disconnected

DONE = object()


@dataclass(frozen=True)
class TurnTimeout:
    """The turn passed server.turn_timeout_s and was cancelled."""

    seconds: float
    type: str = "timeout"


class TurnTask:
    """`start(events)` runs the async iterator `events` in a task; iterate the TurnTask to read them."""

    def __init__(self, slots: Any, metrics: Any, timeout_s: float, api: str,
                 last: Callable[[Any], bool] = lambda event: False) -> None:
        self.slots = slots
        self.last = last  # the turn's last event: its slot is freed there (storing the thread after it is brief)
        self._held = False
        self._held_since = 0.0
        self.metrics = metrics
        self.timeout_s = timeout_s
        self.api = api
        self.queue: asyncio.Queue[Any] = asyncio.Queue()
        self.task: asyncio.Task[None] | None = None

    async def start_queued(self, make_events: Callable[[], AsyncIterator[Any]], receive: Any) -> TurnTask:
        """Waits for a slot (the admission queue: 429 when it is full or past its deadline), unless the client
        disconnects first (then it leaves the queue), and starts the turn."""
        await run_unless_disconnected(self.slots.acquire(), receive)
        self._took_slot()
        return self.start(make_events)

    def start(self, make_events: Callable[[], AsyncIterator[Any]]) -> TurnTask:
        """Starts the turn in the slot `start_queued` took, or takes one now (429 when none is free)."""
        if not self._held:
            self.slots.acquire_now()
            self._took_slot()
        try:
            self.task = asyncio.ensure_future(self._produce(make_events))
        except BaseException:
            self._release()
            raise
        # Released at the last event, or when the task ends in any way (even cancelled before it ever ran).
        self.task.add_done_callback(lambda _: self._release())
        return self

    def _took_slot(self) -> None:
        self._held = True
        self._held_since = time.monotonic()

    def _release(self) -> None:
        if self._held:
            self._held = False
            self.slots.release(time.monotonic() - self._held_since)

    async def _produce(self, make_events: Callable[[], AsyncIterator[Any]]) -> None:
        started = time.perf_counter()
        if self.metrics is not None:
            self.metrics.active_turns.inc()
        try:
            async with asyncio.timeout(self.timeout_s):
                async for event in make_events():
                    if self.metrics is not None:
                        self.metrics.observe(event)
                    self.queue.put_nowait(event)
                    if self.last(event):
                        self._release()
        except TimeoutError:
            self.queue.put_nowait(TurnTimeout(self.timeout_s))
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # a bug ends the turn with a typed error, never a hung request
            logging.getLogger(__name__).exception("internal error in a server turn")
            self.queue.put_nowait(Error(kind="internal", message=f"{type(exc).__name__}: {exc}"))
        finally:
            if self.metrics is not None:
                self.metrics.active_turns.dec()
                self.metrics.turn_latency.labels(self.api).observe(time.perf_counter() - started)
            self.queue.put_nowait(DONE)

    async def next(self) -> Any:
        """The next event, or DONE."""
        return await self.queue.get()

    def cancel(self) -> None:
        if self.task is not None and not self.task.done():
            self.task.cancel()

    async def __aiter__(self) -> AsyncIterator[Any]:
        while True:
            item = await self.next()
            if item is DONE:
                return
            yield item

"""What a guard runner is (`GuardRunner`), what it checks (`CheckInput`), and the per-process cache of loaded guard
models that every runner shares (`shared`).

Models load lazily, on a worker thread, once per process: every pipeline built from any policy that names the same
model directory reuses the loaded model; different models load at the same time (one lock per model key).
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

from guards.verdict import Verdict

logger = logging.getLogger(__name__)
MAX_SHARED = 16  # loaded guards kept per process; the least recently used beyond this are dropped
_SHARED: OrderedDict[tuple[str, str], Any] = OrderedDict()
_SHARED_LOCK = threading.Lock()  # guards the two tables only, never held during a load
_KEY_LOCKS: dict[tuple[str, str], threading.Lock] = {}
T = TypeVar("T")


@dataclass(frozen=True)
class CheckInput:
    stage: str
    text: str
    role: str = "user"  # whose text: user (or third-party) / assistant
    conversation: tuple[tuple[str, str], ...] = ()  # earlier (role, text) pairs, for Llama Guard's context
    language: str | None = None  # for Code Shield: the code's language (None = fenced blocks in model output)
    thread_id: str | None = None  # recorded in the audit log
    images: tuple[Any, ...] = ()  # model.images.ImageData judged with the text (only guards that see images read them)


class GuardRunner(Protocol):
    """One guard, configured from the policy. `check` returns the policy's verdict or raises (the pipeline turns
    exceptions and timeouts into fail-closed verdicts). `load()` (blocking) loads what the guard needs, once per
    process; the pipeline runs it on a worker thread outside the check's timeout, and the chat warms up with it."""

    name: str
    timeout_s: float
    on_error: str

    @property
    def sees_images(self) -> bool:
        """Whether `check` reads `CheckInput.images` (judges them with the text). A guard that does not ignores them:
        Prompt Guard and Code Shield read text only."""
        ...

    def load(self) -> object: ...

    async def check(self, item: CheckInput) -> Verdict: ...


class Closable(Protocol):
    def close(self) -> None: ...


def shared(kind: str, key: str, load: Callable[[], T]) -> T:
    """One loaded guard per (kind, source) per process. Each key loads under its own lock, so Llama Guard and Prompt
    Guard load side by side while two users of the same model wait for one load. A failed load is not cached, so a
    fixed setup recovers. The table is bounded (`MAX_SHARED`, least recently used dropped first; a dropped guard
    process is closed, and a runner still holding it starts it again on its next call)."""
    entry = (kind, key)
    with _SHARED_LOCK:
        if entry in _SHARED:
            _SHARED.move_to_end(entry)
            cached: T = _SHARED[entry]
            return cached
        key_lock = _KEY_LOCKS.setdefault(entry, threading.Lock())
    with key_lock:
        with _SHARED_LOCK:
            if entry in _SHARED:  # loaded by the thread we waited for
                _SHARED.move_to_end(entry)
                waited: T = _SHARED[entry]
                return waited
        started = time.perf_counter()
        logger.info("loading %s (%s)", kind, key)
        value = load()
        logger.info("loaded %s (%s) in %.1f s", kind, key, time.perf_counter() - started)
        with _SHARED_LOCK:
            _SHARED[entry] = value
            while len(_SHARED) > MAX_SHARED:
                dropped, guard = _SHARED.popitem(last=False)
                _KEY_LOCKS.pop(dropped, None)
                if dropped[0].endswith("_process"):
                    guard.close()
        return value


def elapsed_ms(started: float) -> float:
    return round((time.perf_counter() - started) * 1000, 3)


async def in_thread(fn: Callable[..., T], *args: Any) -> T:
    """Run blocking guard work (a model forward pass) on a worker thread, so guards overlap and the loop stays free."""
    return await asyncio.to_thread(fn, *args)

"""Streaming output moderation: the answer is checked in chunks while it is generated, and each chunk is shown only
after the check that covers it passed.

The policy's `agent.streaming_moderation` sets the chunk size (`chunk_chars`) and how much of the text before a chunk
its check also reads (`lookback_chars`, so that a phrase cut by a chunk boundary is still seen whole). Chunks end
at a word boundary where the chunk has one, so no released chunk ends with the first letters of a word. Checks start as
soon as a chunk is complete and run beside the generation; results are used in order. The first check that stops
the turn stops the generation too: nothing after the last passed chunk is ever shown.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any

# A completion that starts like a tool call is held whole (parsed, then checked as before) instead of streamed.
_TOOL_HEAD = re.compile(r"\s*(?:[{\[<]|[A-Za-z_]\w*\.call\()")
DECIDE_CHARS = 24  # non-space characters seen before deciding that a completion is an answer


def looks_like_answer(text: str) -> bool | None:
    """True: stream it as an answer; False: hold it (a tool call, maybe); None: too early to say."""
    if _TOOL_HEAD.match(text):
        return False
    if len(text.strip()) >= DECIDE_CHARS:
        return True
    return None


class ChunkedModeration:
    """Schedules a check per chunk of the growing answer text and hands back the passed chunks in order."""

    def __init__(self, check: Callable[[str], Awaitable[Any]], *, chunk_chars: int, lookback_chars: int) -> None:
        if chunk_chars < 1 or lookback_chars < 0:
            raise ValueError("chunk_chars must be >= 1 and lookback_chars >= 0")
        self._check = check
        self.chunk_chars = chunk_chars
        self.lookback_chars = lookback_chars
        self._scheduled = 0  # text before this index has a check scheduled
        self._pending: deque[tuple[str, asyncio.Future[Any]]] = deque()

    @property
    def scheduled(self) -> int:
        return self._scheduled

    def feed(self, text: str, *, final: bool = False) -> None:
        """`text` is the whole answer so far (it only grows); start checks for its complete chunks, and for the
        rest too when `final`."""
        while len(text) - self._scheduled >= self.chunk_chars or (final and self._scheduled < len(text)):
            end = min(self._scheduled + self.chunk_chars, len(text))
            if end < len(text):  # end at a word boundary: a released chunk never shows the start of a cut word
                space = max(text.rfind(" ", self._scheduled, end), text.rfind("\n", self._scheduled, end))
                if space >= self._scheduled:
                    end = space + 1
            window = text[max(0, self._scheduled - self.lookback_chars) : end]
            self._pending.append((text[self._scheduled : end], asyncio.ensure_future(self._check(window))))
            self._scheduled = end

    def ready(self) -> list[tuple[str, Any]]:
        """(chunk, stage result) for the checks finished so far, in order, stopping at the first unfinished one."""
        out: list[tuple[str, Any]] = []
        while self._pending and self._pending[0][1].done():
            chunk, future = self._pending.popleft()
            out.append((chunk, future.result()))
        return out

    async def next(self) -> tuple[str, Any] | None:
        """Wait for the oldest check; None when none is left."""
        if not self._pending:
            return None
        chunk, future = self._pending.popleft()
        return chunk, await future

    async def cancel(self) -> None:
        futures = [future for _, future in self._pending]
        self._pending.clear()
        for future in futures:
            future.cancel()
        for future in futures:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await future

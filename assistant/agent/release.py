"""How a checked answer is released to the user as TokenDelta events.

Today the whole answer is held until the output guard passed on all of it, then released. The performance issue adds
chunked streaming moderation (`agent.streaming_moderation`: each chunk of `chunk_chars`, with `lookback_chars` of
context, is checked while generation goes on, and released when it passed); it replaces this module's strategy, and
the invariant stays: a TokenDelta only ever carries text that passed the guard covering it.
"""

from __future__ import annotations

from collections.abc import Callable

from assistant.events import Event, TokenDelta

RELEASE_CHARS = 64  # piece size of the released answer, so consumers render it like a stream


def release_answer(answer: str, emit: Callable[[Event], None]) -> None:
    for start in range(0, len(answer), RELEASE_CHARS):
        emit(TokenDelta(text=answer[start : start + RELEASE_CHARS]))

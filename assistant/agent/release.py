"""How a held answer is released to the user as TokenDelta events, once the output guard passed on all of it.

Used when streaming moderation is off (`agent.streaming_moderation.enabled: false`) or the completion was held (it
looked like a tool call at first); otherwise `answer_stream.py` releases the answer chunk by chunk as each chunk's
check passes. Either way, a TokenDelta only ever carries text that passed the guard covering it.
"""

from __future__ import annotations

from collections.abc import Callable

from assistant.events import Event, TokenDelta

RELEASE_CHARS = 64  # piece size of the released answer, so consumers render it like a stream


def release_answer(answer: str, emit: Callable[[Event], None]) -> None:
    for start in range(0, len(answer), RELEASE_CHARS):
        emit(TokenDelta(text=answer[start : start + RELEASE_CHARS]))

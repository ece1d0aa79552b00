"""Collect one completion from the model backend, bounded: a backend that stops producing text, yields something
that is not text, or cancels its own work ends the call with ModelCallError (the turn ends as a model_backend error)
instead of hanging the turn or escaping as an internal error."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator


class ModelCallError(RuntimeError):
    """The model call failed in a way the backend did not report itself."""


async def collect_completion(stream: AsyncIterator[str], idle_timeout_s: float) -> str:
    """All deltas of `stream` joined; at most `idle_timeout_s` seconds before the first delta and between two."""
    iterator = aiter(stream)
    pieces: list[str] = []
    try:
        while True:
            try:
                delta = await asyncio.wait_for(anext(iterator), idle_timeout_s)
            except StopAsyncIteration:
                break
            except TimeoutError:
                raise ModelCallError(
                    f"the model produced no text for {idle_timeout_s:g} s (models.main.timeout_s); the call was "
                    "abandoned"
                ) from None
            if not isinstance(delta, str):
                raise ModelCallError(f"the model backend yielded {type(delta).__name__}, not text")
            pieces.append(delta)
    except asyncio.CancelledError:
        task = asyncio.current_task()
        if task is not None and task.cancelling():
            raise  # the turn itself is being cancelled
        raise ModelCallError("the model backend cancelled its own work mid-stream") from None
    finally:
        close = getattr(iterator, "aclose", None)
        if close is not None:
            with contextlib.suppress(Exception):
                await close()
    return "".join(pieces)

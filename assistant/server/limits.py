"""Limits that protect the process: request body size, client disconnects (concurrent turns: admission.py).

The body limit is a small ASGI middleware, so an oversized body is refused (413) before anything parses it, whether
it declares its length or streams it chunked.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any, TypeVar

from starlette.types import Receive, Scope, Send

from assistant.server.errors import error_body

T = TypeVar("T")


class BodyLimit:
    """ASGI middleware: 413 with OpenAI's error body when a request body passes `max_bytes`."""

    def __init__(self, app: Any, max_bytes: Callable[[], int]) -> None:  # any ASGI app (perimeter.py types its own)
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.max_bytes()
        headers = dict(scope.get("headers") or [])
        declared = headers.get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            await _too_large(send, limit)
            return
        # Read the whole body first (it is small by definition), refuse past the limit, then replay it to the app.
        try:
            body = await read_body(receive, limit)
        except BodyTooLarge:
            await _too_large(send, limit)
            return
        if body is not None:  # None: the client left before sending its body
            await self.app(scope, replaying(body, receive), send)


class BodyTooLarge(Exception):
    pass


async def read_body(receive: Receive, limit: int | None = None) -> bytes | None:
    """A request's whole body from ASGI `receive`; None when the client left first; BodyTooLarge past `limit`."""
    chunks: list[bytes] = []
    seen = 0
    while True:
        message = await receive()
        if message["type"] != "http.request":
            return None
        chunk = message.get("body", b"")
        seen += len(chunk)
        if limit is not None and seen > limit:
            raise BodyTooLarge
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)


def replaying(body: bytes, receive: Receive) -> Receive:
    """An ASGI `receive` that gives the app `body` (already read) once, then whatever comes next."""
    replayed = False

    async def replay() -> MutableMapping[str, Any]:
        nonlocal replayed
        if not replayed:
            replayed = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay


async def _too_large(send: Send, limit: int) -> None:
    body = json.dumps(error_body(413, f"the request body is larger than the policy allows ({limit:,} bytes; "
                                      "server.max_body_bytes)", "request_too_large")).encode()
    await send({"type": "http.response.start", "status": 413,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})


async def wait_for_disconnect(receive: Receive) -> None:
    """Returns when the client went away (the request body has been read already)."""
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return


async def run_unless_disconnected(work: Awaitable[T], receive: Receive) -> T:
    """Await `work`; if the client disconnects first, cancel it (its generation stops, its slot is freed)."""
    task = asyncio.ensure_future(work)
    watcher = asyncio.ensure_future(wait_for_disconnect(receive))
    try:
        await asyncio.wait({task, watcher}, return_when=asyncio.FIRST_COMPLETED)
        if not task.done():
            task.cancel()
            raise asyncio.CancelledError("the client disconnected")
        return task.result()
    finally:
        watcher.cancel()
        if not task.done():
            task.cancel()

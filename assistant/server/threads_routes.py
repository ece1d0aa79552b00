"""Native threads: everything the CLI shows, for clients that want it. The server keeps the conversation.

POST /v1/threads (create, owned by the caller's key), POST /v1/threads/{id}/messages (one turn: SSE whose `data` are
exactly the JSON objects `assistant run --json` prints), GET /v1/threads/{id} (history and any pending approval),
POST /v1/threads/{id}/approval (`{"call_id", "decision": "approve"|"approve_session"|"deny", "reason"}` resumes a
paused turn, SSE as above; `call_id` names the call decided: 400 without it, 409 when it is not the call waiting now,
and for all but one of concurrent decisions on one call), DELETE /v1/threads/{id}. A thread another key owns does not
exist for the caller (404).
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from typing import TYPE_CHECKING, Any

from fastapi import Request

from assistant.agent.approval import APPROVE, APPROVE_SESSION, StaleApproval, deny
from assistant.agent.graph import ThreadBusy
from assistant.api import new_thread_id
from assistant.events import ApprovalRequested, Error, Final, Refusal
from assistant.images import image_limits, images_refusal
from assistant.server.chat_routes import read_json
from assistant.server.errors import ApiError
from assistant.server.limits import run_unless_disconnected
from assistant.server.openai_compat import content_of
from assistant.server.turns import DONE, TurnTask, TurnTimeout
from model.images import ImageData

if TYPE_CHECKING:  # the app imports this module
    from assistant.server.app import Server

HISTORY_KEYS = ("role", "content", "tool_calls", "tool_name")


def owned(server: Server, thread_id: str, key_id: str) -> None:
    if not server.owners.owns(thread_id, key_id):
        raise ApiError(404, f"no thread {thread_id!r}", "thread_not_found")


async def create_thread(server: Server, key_id: str) -> dict[str, Any]:
    thread_id = "thread_" + new_thread_id()
    server.owners.claim(thread_id, key_id)
    return {"id": thread_id, "object": "thread"}


async def thread_info(server: Server, thread_id: str, key_id: str) -> dict[str, Any]:
    owned(server, thread_id, key_id)
    bot = server.assistant
    messages = [{k: m[k] for k in HISTORY_KEYS if k in m} for m in await bot.history(thread_id)]
    pending = await bot.pending_approval(thread_id)
    return {"id": thread_id, "object": "thread", "messages": messages,
            "pending_approval": pending.to_json() if pending else None}


async def delete_thread(server: Server, thread_id: str, key_id: str) -> dict[str, Any]:
    owned(server, thread_id, key_id)
    await server.assistant.delete_thread(thread_id)
    server.owners.forget(thread_id)
    return {"id": thread_id, "object": "thread.deleted", "deleted": True}


async def post_message(server: Server, request: Request, thread_id: str, key_id: str) -> Any:
    owned(server, thread_id, key_id)
    body = await _json(request)
    content = body.get("content", body.get("text")) if isinstance(body, dict) else None
    images: tuple[ImageData, ...] = ()
    if isinstance(content, list):  # OpenAI content parts: text, and images as data: URLs
        content, images = content_of(content, "content", image_limits(server.policy))
    if not isinstance(content, str) or not content:
        raise ApiError(400, 'the body must be {"content": "the message"} or {"content": [content parts]}',
                       "invalid_request", param="content")
    text = content
    if images and (why := images_refusal(server.policy, server.assistant.pipeline, server.assistant.backend)):
        raise ApiError(400, why, "images_refused", param="content")
    return await event_stream(server, request, lambda: server.assistant.stream(text, thread=thread_id, images=images))


async def post_approval(server: Server, request: Request, thread_id: str, key_id: str) -> Any:
    owned(server, thread_id, key_id)
    body = await _json(request)
    decision = body.get("decision") if isinstance(body, dict) else None
    reason = body.get("reason") or "" if isinstance(body, dict) else ""
    call_id = body.get("call_id") if isinstance(body, dict) else None
    shape = '{"call_id": "the pending call\'s id", "decision": "approve"|"approve_session"|"deny", "reason": "..."}'
    if decision not in ("approve", "approve_session", "deny") or not isinstance(reason, str):
        raise ApiError(400, f"the body must be {shape}", "invalid_request", param="decision")
    if not isinstance(call_id, str) or not call_id:  # an approval is bound to the call a human was shown
        raise ApiError(400, f"the body must name the call it decides: {shape}", "invalid_request", param="call_id")
    pending = await server.assistant.pending_approval(thread_id)
    if pending is None:
        raise ApiError(409, f"thread {thread_id!r} does not wait for an approval", "nothing_to_approve")
    if pending.call_id != call_id:  # stale, already decided, or another call: never applied to the one waiting now
        raise ApiError(409, f"thread {thread_id!r} does not wait for call {call_id!r}; it waits for "
                       f"{pending.call_id!r} ({pending.name})", "stale_approval", param="call_id")
    chosen = ({"approve": APPROVE, "approve_session": APPROVE_SESSION}.get(decision) or deny(reason)).for_call(call_id)
    # The Agent checks again, atomically (a lock per thread, a claim in the store): of concurrent decisions on this
    # call exactly one is applied; the others end in StaleApproval, a 409 below.
    return await event_stream(server, request, lambda: server.assistant.resume(thread_id, chosen))


async def event_stream(server: Server, request: Request, make_events: Callable[[], AsyncIterator[Any]]) -> Any:
    """SSE of the turn's events. The first event is read before answering, so a thread that waits for an approval
    (or has none to resume) is a 409, not a broken stream."""
    from sse_starlette.sse import EventSourceResponse

    task = TurnTask(server.slots, server.metrics, server.policy.server.turn_timeout_s, "threads",
                    last=lambda event: isinstance(event, (Final, Refusal, Error, ApprovalRequested)))
    busy: list[ThreadBusy] = []

    async def guarded() -> AsyncIterator[Any]:
        try:
            async for event in make_events():
                yield event
        except ThreadBusy as exc:  # StaleApproval included
            busy.append(exc)

    await task.start_queued(guarded, request.receive)  # waits in the admission queue (429 past it)
    try:
        first = await run_unless_disconnected(task.next(), request.receive)
    except BaseException:
        task.cancel()
        raise
    if first is DONE and busy:
        raise ApiError(409, str(busy[0]), "stale_approval" if isinstance(busy[0], StaleApproval) else "thread_busy")

    async def events() -> AsyncIterator[dict[str, str]]:
        item = first
        try:
            while item is not DONE:
                if isinstance(item, TurnTimeout):
                    item_json = {"type": "error", "kind": "timeout", "message": f"the turn took longer than "
                                 f"{item.seconds:g} s (server.turn_timeout_s)", "elapsed_ms": 0.0}
                else:
                    item_json = item.to_json()
                yield {"data": json.dumps(item_json, ensure_ascii=False)}
                item = await task.next()
        finally:
            task.cancel()

    return EventSourceResponse(events(), ping=15)


async def _json(request: Request) -> Any:
    return await read_json(request)

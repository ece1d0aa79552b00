"""`POST /v1/chat/completions`: OpenAI's Chat Completions on the guarded agent (stream and non-stream).

Per request: authenticate, parse (400), take a turn slot (429), judge the client's history (`trust.py`), run the
turn on a fresh thread seeded with what passed (`agent_bridge.py`), answer in OpenAI's shape with a `guard` object.
The thread is deleted afterwards unless the turn waits for an approval (then the key owns it; see threads_routes).
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import AsyncIterator
from typing import Any

from assistant.agent.provenance import record_problem
from assistant.events import ApprovalRequested, Error, Final, GuardVerdict, Notice, Refusal, TokenDelta, verdict_events
from assistant.images import image_limits, images_refusal
from assistant.server.agent_bridge import ClientToolCalls, Seed
from assistant.server.errors import ERROR_KIND_STATUS, ApiError, error_body
from assistant.server.limits import run_unless_disconnected
from assistant.server.openai_compat import (
    ChatTurn,
    chunk_body,
    completion_body,
    completion_id,
    openai_tool_calls,
    parse_chat_request,
)
from assistant.server.sampling import RequestBackend, Usage, counter
from assistant.server.structured import Structure, build_constraints
from assistant.server.trust import judge_history
from assistant.server.turns import DONE, TurnTask, TurnTimeout
from assistant.storage import open_checkpointer, storage_target
from guards.policy.registry import USER_INPUT

TERMINAL = (Final, Refusal, Error, ApprovalRequested, ClientToolCalls, TurnTimeout)


async def chat_events(server: Any, key_id: str, turn: ChatTurn, thread_id: str,
                      usage: Usage | None = None) -> AsyncIterator[Any]:
    """The turn's events: verdicts on the client's tools and history first, then the agent's own events. What the
    turn judged or produced is remembered for this key once it ended (`remember_turn`). The main model runs with the
    request's settings and counts its tokens into `usage` (`sampling.RequestBackend`)."""

    bot = server.assistant
    records, results, stopped = await server.bridge.judge_tools(bot.pipeline, turn.tools, thread_id=thread_id)
    for verdict in (v for result in results for v in verdict_events(result)):
        yield verdict
    judged = await judge_history(bot.pipeline, server.trust, key_id, turn.history, thread_id=thread_id)
    for verdict in judged.verdicts:
        yield verdict
    if stopped is not None or judged.blocked_stage is not None:
        yield refuse_request(bot, thread_id, stopped, judged)
        return
    if judged.judged:
        yield Notice(kind="history_judged", message=f"{judged.judged} message(s) of the client's history were judged")
    kept, prefix = judged.kept, []
    if turn.continuation is not None:  # its text passed as client assistant text above; the model continues it
        given = kept[-1] if kept else None
        if given is None or given["role"] != "assistant" or given.get("content") != turn.continuation:
            yield Error(kind="bad_input", message="the trailing assistant message is a refusal this server sent "
                        "for the message before it: there is nothing to continue")
            return
        kept, prefix = kept[:-1], bot.deps.tokenizer.encode(turn.continuation)
    seed = Seed(kept, after_tools=turn.user_text is None)
    # The same thread store as the agent's own streams (the policy's `storage`: this SQLite file, or PostgreSQL).
    target = storage_target(getattr(bot.policy, "storage", None), sqlite_path=bot.db_path)
    async with open_checkpointer(target) as saver:
        keep, last = False, None
        try:
            count, counted = counter(bot.deps.tokenizer), usage if usage is not None else Usage()

            def wrap(backend: Any) -> Any:
                return RequestBackend(backend, turn.sampling, counted, count, continue_from=prefix)

            async for event in server.bridge.stream(saver, thread_id, seed, turn.user_text, turn.tools, records,
                                                    backend=wrap, images=turn.user_images):
                if isinstance(event, ApprovalRequested):
                    keep = True
                    server.owners.claim(thread_id, key_id)
                if isinstance(event, TERMINAL):
                    last = event  # held until the thread is written and what passed is remembered
                else:
                    yield event
            if last is not None:
                stored = await server.bridge.messages(saver, thread_id, turn.tools, records)
                remember_turn(server.trust, key_id, turn, last, stored)  # before the client can send it back
                yield last
        finally:
            if not keep:
                await saver.adelete_thread(thread_id)


def refuse_request(bot: Any, thread_id: str, tools: Any, history: Any) -> Refusal:
    """A client tool's definition or the client's history did not pass: the request is refused, nothing runs."""
    if tools is not None:
        stage, guard_error, source = tools.stage, tools.outcome == "error", "client_tools"
    else:
        stage, guard_error, source = history.blocked_stage, history.guard_error, "client_history"
    refusals = bot.policy.refusals
    text = refusals.guard_error if guard_error else refusals.for_stage(stage)
    bot.pipeline.record("refusal", thread_id=thread_id, stage=stage, guard_error=guard_error, source=source)
    return Refusal(stage=stage, message=text, guard_error=guard_error)


def remember_turn(trust: Any, key_id: str, turn: ChatTurn, last: Any, stored: list[dict[str, Any]]) -> None:
    """Remember what this turn judged or produced, so the client can send it back without it being judged again.
    The user's message only as the agent stored it, sealed by its input judgement (`stored`: the thread's messages
    at the end of the turn): nothing a guard did not pass is remembered."""
    user = {"role": "user", "content": turn.user_text} if turn.user_text is not None else None
    if user is not None and any(m.get("role") == "user" and m.get("content") == user["content"]
                                and record_problem(m) is None for m in stored):
        trust.remember(key_id, user)
    if isinstance(last, Final):
        trust.remember(key_id, {"role": "assistant", "content": last.text})
    elif isinstance(last, Refusal):
        reply = {"role": "assistant", "content": last.message}
        trust.remember(key_id, reply)
        if user is not None and last.stage == USER_INPUT and not last.guard_error:
            trust.remember_refusal(key_id, user, reply)
    elif isinstance(last, ClientToolCalls):
        calls = [{"name": c["name"], "arguments": c["arguments"], "call_id": c["call_id"]} for c in last.calls]
        trust.remember(key_id, {"role": "assistant", "content": "", "tool_calls": calls})


class GuardSummary:
    """The `guard` extension object every response carries."""

    def __init__(self, usage: Usage | None = None) -> None:
        self.usage = usage if usage is not None else Usage()  # the main model's tokens (`usage` of the response)
        self.verdicts: list[dict[str, Any]] = []
        self.stages: dict[str, str] = {}
        self.notices: list[dict[str, str]] = []
        self.refusal: dict[str, Any] | None = None
        self.approval: dict[str, Any] | None = None
        self.tokens: dict[str, int] = {}  # guard -> input tokens its model read this turn

    def add(self, event: Any) -> None:
        if isinstance(event, GuardVerdict):
            self.verdicts.append({k: v for k, v in event.to_json().items() if k not in ("type", "elapsed_ms")})
            self.tokens[event.guard] = self.tokens.get(event.guard, 0) + event.tokens
            rank = {"allow": 0, "log": 1, "warn": 2, "ask": 3, "block": 4}
            if rank.get(event.decision, 4) >= rank.get(self.stages.get(event.stage, "allow"), 0):
                self.stages[event.stage] = event.decision
        elif isinstance(event, Notice):
            self.notices.append({"kind": event.kind, "message": event.message})
        elif isinstance(event, Refusal):
            self.refusal = {"stage": event.stage, "guard_error": event.guard_error}

    def body(self) -> dict[str, Any]:
        return {
            "refused": self.refusal is not None, "refusal": self.refusal,
            "guard_error": bool(self.refusal and self.refusal["guard_error"]) or any(v["error"] for v in self.verdicts),
            "stages": self.stages, "verdicts": self.verdicts, "notices": self.notices, "approval": self.approval,
            "tokens": {**self.tokens, "total": sum(self.tokens.values())},  # the guards' own, beside `usage`
        }


def approval_info(event: ApprovalRequested, thread_id: str) -> dict[str, Any]:
    return {"thread_id": thread_id, "call_id": event.call_id, "name": event.name, "arguments": event.arguments,
            "reason": event.reason, "url": f"/v1/threads/{thread_id}/approval"}


def approval_text(event: ApprovalRequested, thread_id: str) -> str:
    return (f"The call to {event.name} needs a human's approval ({event.reason}). Approve or deny it with "
            f"POST /v1/threads/{thread_id}/approval.")


def error_for(event: Any) -> ApiError:
    if isinstance(event, TurnTimeout):
        return ApiError(504, f"the turn took longer than the policy allows ({event.seconds:g} s; "
                        "server.turn_timeout_s)", "turn_timeout")
    status = ERROR_KIND_STATUS.get(event.kind, 500)
    code = {"model_backend": "model_backend_error", "bad_input": "bad_input"}.get(event.kind, event.kind + "_error")
    return ApiError(status, event.message, code)


async def handle_chat(server: Any, request: Any, key_id: str) -> Any:
    from fastapi.responses import JSONResponse


    body = await read_json(request)
    turn = parse_chat_request(body, max_messages=server.policy.server.max_messages, default_model=server.model_name,
                              max_new_tokens=server.policy.models.main.max_new_tokens,
                              image_limits=image_limits(server.policy))
    if turn.has_images:  # refused before any guard or model reads the request (the one rule: assistant/images.py)
        bot = server.assistant
        if (why := images_refusal(server.policy, bot.pipeline, bot.backend)) is not None:
            raise ApiError(400, why, "images_refused", param="messages")
    clash = server.bridge.check_tool_names(turn.tools)
    if clash:
        raise ApiError(400, clash, "tool_name_clash", param="tools")
    turn = constrained(server, turn, offered=body.get("tool_choice") != "none")
    cid = completion_id()
    thread_id = cid
    task = TurnTask(server.slots, server.metrics, server.policy.server.turn_timeout_s, "chat",
                    last=lambda event: isinstance(event, TERMINAL))
    usage = Usage()
    await task.start_queued(lambda: chat_events(server, key_id, turn, thread_id, usage), request.receive)
    summary = GuardSummary(usage)
    if not turn.stream:
        try:
            events = await run_unless_disconnected(_until_terminal(task), request.receive)
        except BaseException:
            task.cancel()  # the client left (or a bug): stop the turn and free its slot
            raise
        # Answered: the turn finishes storing (and deleting) its thread in the background, still holding its slot.
        return JSONResponse(complete(server, key_id, turn, cid, thread_id, events, summary))
    return await stream_response(server, key_id, turn, cid, thread_id, task, summary, request)


def constrained(server: Any, turn: ChatTurn, *, offered: bool) -> ChatTurn:
    """The turn with its `response_format` / `tool_choice` as decoding constraints (structured.py) over the tools the
    model sees (the policy's JSON-defined tools and the client's; none with tool_choice "none")."""
    if turn.structure == Structure():
        return turn
    if turn.continuation is not None:  # the constraint starts at the answer's first token, not inside given text
        raise ApiError(400, "a continuation (a trailing assistant message) cannot be combined with response_format "
                       "or tool_choice", "invalid_request", param="messages")
    spec = server.bridge.deps.tool_spec
    tools = [(t.name, t.parameters) for t in (*spec.tools, *turn.tools)] if offered else []
    made = build_constraints(turn.structure, tools, spec.tool_format, server.bridge.deps.backend)
    sampling = dataclasses.replace(turn.sampling, constraint=made.every_call, forced=made.first_call)
    return dataclasses.replace(turn, sampling=sampling)


async def _until_terminal(task: TurnTask) -> list[Any]:
    events = []
    async for event in task:
        events.append(event)
        if isinstance(event, TERMINAL):
            break
    return events


def complete(server: Any, key_id: str, turn: ChatTurn, cid: str, thread_id: str, events: list[Any],
             summary: GuardSummary) -> dict[str, Any]:
    last = next((e for e in reversed(events) if isinstance(e, TERMINAL)), None)
    for event in events:
        summary.add(event)
    if last is None:
        raise ApiError(500, "the turn ended without an answer", "internal_error")
    if isinstance(last, (Error, TurnTimeout)):
        raise error_for(last)
    usage = summary.usage.body()
    if isinstance(last, Final):
        return completion_body(cid, turn.model, content=last.text, finish=answer_finish(summary), guard=summary.body(),
                               usage=usage)
    if isinstance(last, Refusal):
        return completion_body(cid, turn.model, content=None, refusal=last.message, finish="content_filter",
                               guard=summary.body(), usage=usage)
    if isinstance(last, ClientToolCalls):
        return completion_body(cid, turn.model, content=None, finish="tool_calls", guard=summary.body(),
                               tool_calls=list(last.calls), usage=usage)
    summary.approval = approval_info(last, thread_id)
    return completion_body(cid, turn.model, content=approval_text(last, thread_id), finish="stop",
                           guard=summary.body(), usage=usage)


def answer_finish(summary: GuardSummary) -> str:
    """`length` when the answer's model call ended at `max_tokens` instead of its end-of-turn token."""
    return "length" if summary.usage.calls and summary.usage.last_hit_limit else "stop"


async def stream_response(server: Any, key_id: str, turn: ChatTurn, cid: str, thread_id: str, task: TurnTask,
                          summary: GuardSummary, request: Any) -> Any:
    """SSE chunks. Events are read ahead until the first answer text or the end, so an error that comes before any
    text still gets its own HTTP status instead of a 200 stream."""
    from sse_starlette.sse import EventSourceResponse


    ahead: list[Any] = []

    async def read_ahead() -> None:
        while True:
            event = await task.next()
            ahead.append(event)
            if event is _done() or isinstance(event, (TokenDelta, *TERMINAL)):
                return

    try:
        await run_unless_disconnected(read_ahead(), request.receive)
    except BaseException:
        task.cancel()
        raise
    if isinstance(ahead[-1], (Error, TurnTimeout)):
        task.cancel()
        for event in ahead:
            summary.add(event)
        raise error_for(ahead[-1])

    async def chunks() -> AsyncIterator[dict[str, str]]:
        def data(body: dict[str, Any]) -> dict[str, str]:
            return {"data": json.dumps(body, ensure_ascii=False)}

        sent = ""
        finished = False
        try:
            yield data(chunk_body(cid, turn.model, {"role": "assistant", "content": ""}))
            queue = list(ahead)
            while True:
                event = queue.pop(0) if queue else await task.next()
                if event is _done():
                    break
                summary.add(event)
                if isinstance(event, TokenDelta):
                    sent += event.text
                    yield data(chunk_body(cid, turn.model, {"content": event.text}))
                elif isinstance(event, TERMINAL):
                    for body in final_chunks(server, key_id, turn, cid, thread_id, event, summary, sent):
                        yield data(body)
                    if turn.include_usage and not isinstance(event, (Error, TurnTimeout)):
                        yield data({**chunk_body(cid, turn.model, {}), "choices": [], "usage": summary.usage.body()})
                    break
            yield {"data": "[DONE]"}
            finished = True
        finally:
            if not finished:
                task.cancel()  # the client went away mid-stream: stop the turn, free its slot

    return EventSourceResponse(chunks(), ping=15)


def final_chunks(server: Any, key_id: str, turn: ChatTurn, cid: str, thread_id: str, last: Any,
                 summary: GuardSummary, sent: str) -> list[dict[str, Any]]:
    model = turn.model
    if isinstance(last, (Error, TurnTimeout)):
        error = error_for(last)
        return [error_body(error.status, error.message, error.code)]
    if isinstance(last, Final):
        rest = last.text[len(sent):] if last.text.startswith(sent) else ""
        out = [chunk_body(cid, model, {"content": rest})] if rest else []
        return [*out, chunk_body(cid, model, {}, answer_finish(summary), summary.body())]
    if isinstance(last, Refusal):  # after any text already sent (which passed): OpenAI's refusal delta
        return [chunk_body(cid, model, {"refusal": last.message}),
                chunk_body(cid, model, {}, "content_filter", summary.body())]
    if isinstance(last, ClientToolCalls):
        delta = {"tool_calls": openai_tool_calls(list(last.calls), with_index=True)}
        return [chunk_body(cid, model, delta), chunk_body(cid, model, {}, "tool_calls", summary.body())]
    summary.approval = approval_info(last, thread_id)
    return [chunk_body(cid, model, {"content": approval_text(last, thread_id)}),
            chunk_body(cid, model, {}, "stop", summary.body())]


def _done() -> Any:

    return DONE


async def read_json(request: Any) -> Any:
    raw = await request.body()
    try:
        return json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ApiError(400, f"the request body is not valid JSON: {exc}", "invalid_json") from exc

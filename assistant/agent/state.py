"""The agent's graph state, kept as plain JSON-like data so the SQLite checkpointer stores it without custom types.

`messages` is what the model sees (system prompt and tool definitions are added at encoding time, never stored):
blocked text is never appended. `turn` is the scratch space of the turn in progress, reset when a new user message
arrives. `session_approved` holds the tool names a human approved "for the session" on this thread.
"""

from __future__ import annotations

from typing import Any, Literal, TypedDict

from model.messages import Message, ToolCall

MessageDict = dict[str, Any]
CallDict = dict[str, Any]


class TurnState(TypedDict, total=False):
    start: int  # index in `messages` of this turn's user message
    steps: int  # model calls so far
    tool_failures: int  # parse errors and tool errors fed back to the model so far
    calls: int  # tool calls executed (or attempted) so far, for calls-per-turn
    untrusted: bool  # a tool result entered the context in this turn
    pending: list[CallDict]  # tool calls of the last model message, with their review outcome
    executed: list[str]  # call ids already run, so a re-run node never runs a call twice
    outcome: Literal["", "final", "refusal", "error", "approval"]


class AgentState(TypedDict, total=False):
    messages: list[MessageDict]
    turn: TurnState
    session_approved: list[str]
    dropped: int  # oldest messages left out of the prompt so far (the window only moves forward)


def message_to_dict(message: Message) -> MessageDict:
    data: MessageDict = {"role": message.role, "content": message.content}
    if message.tool_calls:
        data["tool_calls"] = [call_to_dict(c) for c in message.tool_calls]
    if message.raw is not None:
        data["raw"] = message.raw
    if message.stop_reason is not None:
        data["stop_reason"] = message.stop_reason
    if message.tool_name is not None:
        data["tool_name"] = message.tool_name
    return data


def message_from_dict(data: MessageDict) -> Message:
    return Message(
        role=data["role"],
        content=data.get("content", ""),
        tool_calls=tuple(call_from_dict(c) for c in data.get("tool_calls", ())),
        raw=data.get("raw"),
        stop_reason=data.get("stop_reason"),
        tool_name=data.get("tool_name"),
    )


def call_to_dict(call: ToolCall) -> CallDict:
    return {"name": call.name, "arguments": dict(call.arguments), "call_id": call.call_id}


def call_from_dict(data: CallDict) -> ToolCall:
    return ToolCall(name=data["name"], arguments=dict(data.get("arguments") or {}), call_id=data.get("call_id"))

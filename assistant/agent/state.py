"""The agent's graph state, kept as plain JSON-like data so the SQLite checkpointer stores it without custom types.

`messages` is what the model sees (system prompt and tool definitions are added at encoding time, never stored):
blocked text is never appended. `turn` is the scratch space of the turn in progress, reset when a new user message
arrives. Every message carries the record of the judgement that let it in (`judged`, see provenance.py), and the
model reads only messages whose record matches them. `session_approved` holds the tool names a human approved "for
the session" on this thread.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal, TypedDict

from model.images import ImageData
from model.messages import Message, ToolCall

MessageDict = dict[str, Any]
CallDict = dict[str, Any]


class TurnData(TypedDict, total=False):
    start: int  # index in `messages` of this turn's user message
    steps: int  # model calls so far
    tool_failures: int  # parse errors and tool errors fed back to the model so far
    calls: int  # tool calls proposed so far, for tools.max_calls_per_turn
    pending: list[CallDict]  # tool calls of the last model message, with their review outcome
    executed: list[str]  # call ids already run, so a re-run node never runs a call twice
    outcome: Literal["", "final", "refusal", "error", "approval"]


class AgentState(TypedDict, total=False):
    messages: list[MessageDict]
    turn: TurnData
    session_approved: list[str]
    dropped: int  # oldest messages left out of the prompt so far (the window only moves forward)
    ledger: int  # 1: every message carries its judgement record (provenance.py); absent: stored before records


def new_turn(start: int) -> TurnData:
    return {"start": start, "steps": 0, "tool_failures": 0, "calls": 0, "pending": [], "executed": [], "outcome": ""}


def untrusted_in_view(messages: Sequence[MessageDict], dropped: int) -> bool:
    """A tool's output is in what the model sees (the window from `dropped` on), in this turn or an earlier one.
    Only the agent's own notices (a denial, a withheld result, a parse error) are marked trusted."""
    return any(m["role"] == "tool" and not m.get("notice") for m in messages[dropped:])


def message_from_dict(data: MessageDict) -> Message:
    spans = data.get("special_spans")
    extra: dict[str, Any] = {} if spans is None else {"special_spans": tuple(tuple(s) for s in spans)}
    return Message(
        role=data["role"],
        content=data.get("content", ""),
        tool_calls=tuple(call_from_dict(c) for c in data.get("tool_calls", ())),
        raw=data.get("raw"),
        stop_reason=data.get("stop_reason"),
        tool_name=data.get("tool_name"),
        images=tuple(ImageData.from_dict(image) for image in data.get("images") or ()),
        **extra,
    )


def call_from_dict(data: CallDict) -> ToolCall:
    return ToolCall(name=data["name"], arguments=dict(data.get("arguments") or {}), call_id=data.get("call_id"))

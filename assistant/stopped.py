"""A turn the user stopped (esc in the chat, ctrl+c in `assistant run`): what of it is kept.

Closing `Assistant.stream` early cancels the turn (generation, guards, a running sandbox) and stores nothing of it.
The user saw part of it, so the thread keeps exactly that: the user's message when its input guards had passed, and
the answer as far as it was shown - every shown piece passed its checks - marked `"stopped": true`. Nothing that was
not shown (text still waiting for a guard, tool output of the turn) is kept.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from assistant.agent.provenance import record_problem, seal_trusted
from assistant.events import Error, Event, GuardVerdict, TokenDelta, ToolCallProposed, ToolResult
from guards.policy.registry import USER_INPUT

CANCELLED = "cancelled"  # the Error kind of a stopped turn
STOPPED_TEXT = "stopped"
STOP_MESSAGE = "stopped by the user; the answer is kept as far as it was shown"


def stopped_event(elapsed_ms: float = 0.0) -> Error:
    """The last event of a stopped turn (`assistant run --json` prints it; the chat stores it)."""
    return Error(kind=CANCELLED, message=STOP_MESSAGE, elapsed_ms=elapsed_ms)


def is_stopped(events: Sequence[Event]) -> bool:
    return any(isinstance(e, Error) and e.kind == CANCELLED for e in events)


def input_passed(events: Sequence[Event]) -> bool:
    """The user's message passed its input guards: the turn got past them (an event of a later stage was seen).
    A stop while the input guards still ran leaves the message unjudged, so it is not stored."""
    for event in events:
        if isinstance(event, GuardVerdict) and event.stage == USER_INPUT:
            continue
        if isinstance(event, TokenDelta | ToolCallProposed | ToolResult | GuardVerdict):
            return True
    return False


def shown_text(events: Sequence[Event]) -> str:
    """The answer as the user saw it: every released piece of the turn, in order."""
    return "".join(event.text for event in events if isinstance(event, TokenDelta))


def stopped_messages(
    text: str, events: Sequence[Event], history: Sequence[dict[str, Any]] = (), admitted: dict[str, Any] | None = None
) -> list[dict[str, Any]]:
    """The messages a stopped turn adds to the thread (`history`: what it holds now): the answer as far as it was
    shown, and only after a user message the agent stored. The agent stores the user's message once its input
    judgement passed, sealed with it (and writes the thread when a run ends, a cancelled one too), so a message
    stopped before or while it was judged (or while an attachment was) is never kept, whatever events came."""
    if not input_passed(events):
        return []
    messages: list[dict[str, Any]] = []
    if not _already_stored(text, history):
        sealed = admitted is not None and admitted.get("content") == text and record_problem(admitted) is None
        if not sealed:  # stopped before (or while) its judgement: nothing of the turn is kept
            return []
        messages.append(dict(admitted))  # type: ignore[arg-type]  # checked just above
    # every piece of it was released to the user only after a check covering it passed (the answer stream)
    messages.append(seal_trusted({"role": "assistant", "content": shown_text(events), STOPPED_TEXT: True}, "shown"))
    return messages


def _already_stored(text: str, history: Sequence[dict[str, Any]]) -> bool:
    for message in reversed(history):
        if message.get("role") == "user":
            return message.get("content") == text
        if message.get("role") == "assistant" and not message.get("tool_calls"):
            return False  # an answer after the last user message: that one belongs to an earlier turn
    return False

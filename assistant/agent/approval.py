"""Human approval of tool calls: the decision type, and the callback shape the edges (CLI, TUI, API) inject.

The core never prompts. The graph pauses with LangGraph's `interrupt()` and is resumed with the decision as plain
data (it is checkpointed), so a decision can also arrive from another process after a restart.
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Literal

from assistant.events import ApprovalRequested

DecisionAction = Literal["approve", "approve_session", "deny"]
ACTIONS: tuple[DecisionAction, ...] = ("approve", "approve_session", "deny")


@dataclass(frozen=True)
class Decision:
    """approve (once), approve_session (this tool, for the rest of the thread), or deny (the model reads the reason)."""

    action: DecisionAction
    reason: str = ""

    def __post_init__(self) -> None:
        if self.action not in ACTIONS:
            raise ValueError(f"unknown approval action {self.action!r}; expected one of {', '.join(ACTIONS)}")

    def to_resume(self) -> dict[str, str]:
        return {"action": self.action, "reason": self.reason}


_KINDS: dict[str, DecisionAction] = {"once": "approve", "session": "approve_session", "deny": "deny"}
APPROVE = Decision("approve")
APPROVE_SESSION = Decision("approve_session")


def deny(reason: str = "") -> Decision:
    return Decision("deny", reason)


ApproveCallback = Callable[[ApprovalRequested], "Decision | bool | Awaitable[Decision | bool]"]


def coerce_decision(value: Any) -> Decision:
    """Accept a Decision, a bool (True = approve once), or the resume dict; anything else denies (fail closed)."""
    if isinstance(value, Decision):
        return value
    if isinstance(value, bool):
        return APPROVE if value else deny("The user did not approve this call.")
    if isinstance(value, dict) and value.get("action") in ACTIONS:
        return Decision(value["action"], str(value.get("reason") or ""))
    kind = getattr(value, "kind", None)  # the TUI's ApprovalDecision(kind="once"|"session"|"deny", reason)
    if kind in _KINDS:
        return Decision(_KINDS[kind], str(getattr(value, "reason", "") or ""))
    return deny(f"Unrecognised approval answer {value!r}; denied.")


async def ask(callback: ApproveCallback, request: ApprovalRequested) -> Decision:
    answer = callback(request)
    if inspect.isawaitable(answer):
        answer = await answer
    return coerce_decision(answer)


def denial_notice(name: str, decision: Decision) -> str:
    """What the model sees in place of the result of a call a human denied."""
    why = f" Reason: {decision.reason}" if decision.reason else ""
    return f"The user denied the call to {name}.{why}"

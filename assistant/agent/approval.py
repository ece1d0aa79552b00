"""Human approval of tool calls: the decision type, and the callback shape the edges (CLI, TUI, API) inject.

The core never prompts. The graph pauses with LangGraph's `interrupt()` and is resumed with the decision as plain
data (it is checkpointed), so a decision can also arrive from another process after a restart. A decision is bound
to the call it decides (`call_id`, the id of the `ApprovalRequested` a human was shown): resuming a thread with a
decision for any other call (stale, already decided, a later one no human saw) is refused (`StaleApproval`).
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import weakref
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field, replace
from typing import Any, Literal

from assistant.events import ApprovalRequested
from model import telemetry

DecisionAction = Literal["approve", "approve_session", "deny"]
ACTIONS: tuple[DecisionAction, ...] = ("approve", "approve_session", "deny")


@dataclass(frozen=True)
class Decision:
    """approve (once), approve_session (this tool, for the rest of the thread), or deny (the model reads the reason,
    once it passed the user_input guards). `call_id`: the call decided - required to resume a paused thread; an
    `approve` callback's decision is bound to the request it was shown ("" = that request)."""

    action: DecisionAction
    reason: str = ""
    call_id: str = ""

    def __post_init__(self) -> None:
        if self.action not in ACTIONS:
            raise ValueError(f"unknown approval action {self.action!r}; expected one of {', '.join(ACTIONS)}")
        if not isinstance(self.call_id, str):
            raise ValueError(f"call_id must be a string, got {type(self.call_id).__name__}")

    def for_call(self, call_id: str) -> Decision:
        """This decision, bound to the call `call_id` (the `call_id` of the ApprovalRequested that was shown)."""
        return replace(self, call_id=call_id)

    def to_resume(self) -> dict[str, str]:
        return {"action": self.action, "reason": self.reason, "call_id": self.call_id}


class ThreadBusy(Exception):
    """The thread waits for an approval decision; resume it before sending a new message (or: nothing to resume)."""


class StaleApproval(ThreadBusy):
    """A decision that does not decide the call the thread waits for now: no call waits, another call waits (the
    decision's is stale or already decided), or another process is deciding it at this moment."""


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
        return Decision(value["action"], str(value.get("reason") or ""), str(value.get("call_id") or ""))
    kind = getattr(value, "kind", None)  # the TUI's ApprovalDecision(kind="once"|"session"|"deny", reason, call_id)
    if kind in _KINDS:
        return Decision(_KINDS[kind], str(getattr(value, "reason", "") or ""), str(getattr(value, "call_id", "") or ""))
    return deny(f"Unrecognised approval answer {value!r}; denied.")


async def ask(callback: ApproveCallback, request: ApprovalRequested) -> Decision:
    # the wait for a human, as a span of the turn (a decision resumed later from storage has no wait to time)
    with telemetry.span(f"approval {request.name}", {"gen_ai.tool.name": request.name,
                                                     "gen_ai.tool.call.id": request.call_id}) as span:
        answer = callback(request)
        if inspect.isawaitable(answer):
            answer = await answer
        decision = coerce_decision(answer)
        telemetry.annotate(span, {"assistant.approval.decision": decision.action})
        return decision


def denial_notice(name: str, decision: Decision) -> str:
    """What the model sees in place of the result of a call a human denied."""
    why = f" Reason: {decision.reason}" if decision.reason else ""
    return f"The user denied the call to {name}.{why}"


@dataclass
class _Held:
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    users: int = 0  # streams holding or waiting for the lock


class ThreadLocks:
    """One asyncio lock per thread id (per event loop: `Assistant.run` starts a loop per call), held by a stream from
    reading the thread's pending approval until its run has written the thread: two decisions, or a decision and a
    message, on one thread never interleave in this process. Entries go when no stream holds or waits for them."""

    def __init__(self) -> None:
        self._loops: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[str, _Held]] = (
            weakref.WeakKeyDictionary()
        )

    @contextlib.asynccontextmanager
    async def hold(self, thread_id: str) -> AsyncIterator[None]:
        locks = self._loops.setdefault(asyncio.get_running_loop(), {})
        entry = locks.setdefault(thread_id, _Held())
        entry.users += 1
        try:
            async with entry.lock:
                yield
        finally:
            entry.users -= 1
            if entry.users == 0:
                locks.pop(thread_id, None)


THREAD_LOCKS = ThreadLocks()

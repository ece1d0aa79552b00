"""The one typed event stream the agent yields. The TUI, the CLI and the Python API only consume it.

Events are frozen dataclasses; `to_json()` gives the JSON object `assistant run --json` prints (every object has a
`type`). `elapsed_ms` is the time since the turn started, so consumers can show timings without clocks of their own.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from guards.verdict import StageResult, Verdict


@dataclass(frozen=True)
class _Event:
    elapsed_ms: float = field(default=0.0, kw_only=True)

    type: str = field(default="", init=False)

    def to_json(self) -> dict[str, Any]:
        return {"type": self.type, **{k: _plain(v) for k, v in dataclasses.asdict(self).items() if k != "type"}}


def _plain(value: Any) -> Any:
    if isinstance(value, tuple):
        return [_plain(v) for v in value]
    return value


@dataclass(frozen=True)
class TokenDelta(_Event):
    """Answer text released to the user (only after the guards that cover it passed)."""

    text: str
    type: str = field(default="token", init=False)


@dataclass(frozen=True)
class GuardVerdict(_Event):
    """One guard's verdict at one stage (mirrors guards.verdict.Verdict as plain data). `call_id`: the tool call (or
    attachment) whose text it judged - a call's review (tool_call, code) and its result (tool_result, and the result
    as model output); None for the user's input and the answer."""

    stage: str
    guard: str
    decision: str
    score: float | None = None
    categories: tuple[str, ...] = ()
    reasons: tuple[str, ...] = ()
    latency_ms: float = 0.0
    error: str | None = None
    call_id: str | None = None
    tokens: int = 0  # input tokens the guard's model read (the `guard` object's token counts in `serve`)
    images: tuple[str, ...] = ()  # the images this guard judged with the text (`name (WxH format)`), in order
    type: str = field(default="verdict", init=False)

    @classmethod
    def of(cls, verdict: Verdict, *, call_id: str | None = None) -> GuardVerdict:
        """A guard's verdict as an event; `call_id` names the call (or attachment) it belongs to."""
        return cls(
            stage=verdict.stage,
            guard=verdict.guard,
            decision=verdict.decision,
            score=verdict.score,
            categories=tuple(verdict.categories),
            reasons=tuple(verdict.reasons),
            latency_ms=verdict.latency_ms,
            error=verdict.error,
            call_id=call_id,
            tokens=verdict.tokens,
        )


def verdict_events(result: StageResult, call_id: str | None = None) -> list[GuardVerdict]:
    """A stage's verdicts as events; `call_id`: the tool call (or attachment) whose text they judged."""
    return [GuardVerdict.of(verdict, call_id=call_id) for verdict in result.verdicts]


@dataclass(frozen=True)
class ToolCallProposed(_Event):
    """The model asked for a tool; the call passed the tool_call and code guards, rules and approval come next."""

    call_id: str
    name: str
    arguments: dict[str, Any]
    type: str = field(default="tool_call", init=False)


@dataclass(frozen=True)
class ApprovalRequested(_Event):
    """A tool call waits for a human decision (approve once, approve for the session, deny with a reason)."""

    call_id: str
    name: str
    arguments: dict[str, Any]
    reason: str
    type: str = field(default="approval", init=False)


@dataclass(frozen=True)
class ToolResult(_Event):
    """What a tool returned, as the model will see it (after the tool-result guards)."""

    call_id: str
    name: str
    ok: bool
    output: str
    error: str | None = None
    limits_hit: tuple[str, ...] = ()
    blocked: bool = False
    type: str = field(default="tool_result", init=False)


@dataclass(frozen=True)
class Refusal(_Event):
    """The turn ended because the policy blocked something; `message` is the policy's refusal text."""

    stage: str
    message: str
    guard_error: bool = False
    type: str = field(default="refusal", init=False)


@dataclass(frozen=True)
class Final(_Event):
    """The turn's answer, complete."""

    text: str
    thread_id: str = ""
    type: str = field(default="final", init=False)


@dataclass(frozen=True)
class Error(_Event):
    """The turn could not finish: `kind` is model_backend, bad_input, tool or internal."""

    kind: str
    message: str
    type: str = field(default="error", init=False)


@dataclass(frozen=True)
class Notice(_Event):
    """Something the user should know that changes nothing about safety: `kind` is context_trimmed, ..."""

    kind: str
    message: str
    type: str = field(default="notice", init=False)


Event = TokenDelta | GuardVerdict | ToolCallProposed | ApprovalRequested | ToolResult | Refusal | Final | Error | Notice

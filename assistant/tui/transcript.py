"""Pure functions over the agent's events: folding a turn into a record, verdict summaries, markdown export.

The chat store keeps each turn as its user text plus the events it produced (`Event.to_json()`), so a resumed
conversation is rebuilt by replaying exactly what the user saw, guard verdicts included. A verdict on a tool call or
an attachment names it (`GuardVerdict.call_id`); turns stored before verdicts did get their call ids on reading
(`with_call_ids`).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from typing import Any, Literal

from assistant.events import (
    ApprovalRequested,
    Error,
    Event,
    Final,
    GuardVerdict,
    Notice,
    Refusal,
    TokenDelta,
    ToolCallProposed,
    ToolResult,
)
from assistant.stopped import CANCELLED
from assistant.tui.attachments import is_attachment_call
from guards.policy import registry
from guards.policy.categories import LLAMA_GUARD_CATEGORIES

Summary = Literal["passed", "warned", "blocked", "none"]

_EVENT_TYPES: dict[str, type] = {
    "token": TokenDelta,
    "verdict": GuardVerdict,
    "tool_call": ToolCallProposed,
    "approval": ApprovalRequested,
    "tool_result": ToolResult,
    "refusal": Refusal,
    "final": Final,
    "error": Error,
    "notice": Notice,
}
_TUPLE_FIELDS = {"categories", "reasons", "limits_hit", "images"}
LEGACY_CALL_STAGES = frozenset({registry.TOOL_CALL, registry.TOOL_RESULT, registry.CODE})


def event_from_json(data: dict[str, Any]) -> Event:
    """Inverse of `Event.to_json()`; raises ValueError for an unknown type."""
    kind = data.get("type")
    cls = _EVENT_TYPES.get(str(kind))
    if cls is None:
        raise ValueError(f"unknown event type {kind!r}")
    kwargs = {k: tuple(v) if k in _TUPLE_FIELDS and isinstance(v, list) else v for k, v in data.items() if k != "type"}
    event: Event = cls(**kwargs)
    return event


def with_call_ids(events: Sequence[Event]) -> list[Event]:
    """A turn stored before verdicts named their call, with the call ids the chat showed them under then: a verdict
    between an attachment and its result is the attachment's; one of a tool stage the latest call's."""
    out: list[Event] = []
    latest: str | None = None
    attaching: str | None = None
    for event in events:
        if isinstance(event, ToolCallProposed):
            latest = event.call_id
            attaching = event.call_id if is_attachment_call(event.call_id, event.name) else None
        elif isinstance(event, ToolResult):
            attaching = None
        elif isinstance(event, GuardVerdict) and event.call_id is None:
            owner = attaching or (latest if event.stage in LEGACY_CALL_STAGES else None)
            event = replace(event, call_id=owner) if owner else event
        out.append(event)
    return out


def summarize(verdicts: Iterable[GuardVerdict]) -> Summary:
    """The at-a-glance state of a set of verdicts: any block (or guard error) wins, then warn/ask, then passed."""
    result: Summary = "none"
    for verdict in verdicts:
        if verdict.decision == "block" or verdict.error:
            return "blocked"
        if verdict.decision in ("warn", "ask"):
            result = "warned"
        elif result == "none":
            result = "passed"
    return result


def verdict_line(verdict: GuardVerdict) -> str:
    """One line of detail: guard, decision, score, categories, latency, error."""
    parts = [f"{verdict.guard}: {verdict.decision}"]
    if verdict.score is not None:
        parts.append(f"score {verdict.score:.2f}")
    if verdict.categories:

        named = [f"{code} {LLAMA_GUARD_CATEGORIES[code]}" if code in LLAMA_GUARD_CATEGORIES else code
                 for code in verdict.categories]
        parts.append("categories " + ", ".join(named))
    parts.append(f"{verdict.latency_ms:.0f} ms")
    if verdict.error:
        parts.append(f"error: {verdict.error}")
    line = " · ".join(parts)
    if verdict.reasons:
        line += "\n" + "\n".join(f"  - {reason}" for reason in verdict.reasons)
    return line


@dataclass(frozen=True)
class ToolCallRecord:
    call: ToolCallProposed
    verdicts: tuple[GuardVerdict, ...] = ()
    approval: ApprovalRequested | None = None
    result: ToolResult | None = None


@dataclass(frozen=True)
class TurnRecord:
    user_text: str
    answer: str = ""
    input_verdicts: tuple[GuardVerdict, ...] = ()
    output_verdicts: tuple[GuardVerdict, ...] = ()
    tool_calls: tuple[ToolCallRecord, ...] = ()
    refusal: Refusal | None = None
    error: Error | None = None


def fold_turn(user_text: str, events: Sequence[Event]) -> TurnRecord:
    """Fold one turn's events into a record. A verdict with a `call_id` belongs to that call (one whose call was
    never shown - its guards blocked it - to the answer's)."""
    answer: list[str] = []
    final: str | None = None
    inputs: list[GuardVerdict] = []
    outputs: list[GuardVerdict] = []
    calls: list[ToolCallRecord] = []
    refusal: Refusal | None = None
    error: Error | None = None
    events = with_call_ids(events)  # a turn stored before verdicts named their call
    shown = {event.call_id for event in events if isinstance(event, ToolCallProposed)}
    by_call: dict[str, list[GuardVerdict]] = {}
    for event in events:
        match event:
            case TokenDelta(text=text):
                answer.append(text)
            case GuardVerdict(call_id=str() as call_id) if call_id in shown:
                by_call.setdefault(call_id, []).append(event)
            case GuardVerdict(stage=registry.USER_INPUT):
                inputs.append(event)
            case GuardVerdict():
                outputs.append(event)
            case ToolCallProposed():
                calls.append(ToolCallRecord(call=event))
            case ApprovalRequested(call_id=call_id):
                _update_call(calls, call_id, approval=event)
            case ToolResult(call_id=call_id):
                _update_call(calls, call_id, result=event)
            case Refusal():
                refusal = event
            case Final(text=text):
                final = text
            case Error():
                error = event
    return TurnRecord(
        user_text=user_text,
        answer=final if final is not None else "".join(answer),
        input_verdicts=tuple(inputs),
        output_verdicts=tuple(outputs),
        tool_calls=tuple(_replace(call, verdicts=tuple(by_call.get(call.call.call_id, ()))) for call in calls),
        refusal=refusal,
        error=error,
    )


def visible_texts(user_text: str, events: Sequence[Event]) -> list[str]:
    """What the chat showed of one turn, as plain texts (for /search)."""
    turn = fold_turn(user_text, events)
    texts = [turn.user_text, turn.answer]
    texts += [turn.refusal.message] if turn.refusal is not None else []
    texts += [r.result.output for r in turn.tool_calls if r.result is not None and r.result.output]
    texts += [str(r.call.arguments.get("file", "")) for r in turn.tool_calls if is_attachment_call(r.call.call_id,
                                                                                                    r.call.name)]
    texts += image_labels(turn)
    return [t for t in texts if t]


def image_labels(turn: TurnRecord) -> list[str]:
    """The labels (`name (WxH format)`) of the images the input guards saw with the user's message, in order."""
    return list(dict.fromkeys(label for verdict in turn.input_verdicts for label in verdict.images))


def _replace(record: ToolCallRecord, **changes: Any) -> ToolCallRecord:
    return replace(record, **changes)


def _update_call(calls: list[ToolCallRecord], call_id: str, **changes: Any) -> None:
    for index in range(len(calls) - 1, -1, -1):
        if calls[index].call.call_id == call_id:
            calls[index] = _replace(calls[index], **changes)
            return


def _badge(verdicts: Sequence[GuardVerdict]) -> str:
    state = summarize(verdicts)
    if state == "none":
        return ""
    detail = "; ".join(f"{v.guard} {v.decision}" + (f" {v.score:.2f}" if v.score is not None else "") for v in verdicts)
    return f"_guards: {state} ({detail})_"


def _fence(text: str, language: str = "") -> str:
    ticks = "```"
    while ticks in text:
        ticks += "`"
    return f"{ticks}{language}\n{text}\n{ticks}"


def export_markdown(title: str, turns: Sequence[TurnRecord]) -> str:
    """A conversation as a markdown document: each turn's messages, guard verdicts, tool calls and results."""
    lines = [f"# {title}", ""]
    for turn in turns:
        lines += ["## You", "", turn.user_text, ""]
        if badge := _badge(turn.input_verdicts):
            lines += [badge, ""]
        for label in image_labels(turn):  # their pixels are not kept: the label and what the guards that saw it said
            seen = [v for v in turn.input_verdicts if label in v.images]
            lines += [f"**Attached image `{label}`**", "", _badge(seen), ""]
        for record in (r for r in turn.tool_calls if is_attachment_call(r.call.call_id, r.call.name)):
            lines += [f"**Attached file `{record.call.arguments.get('file', '?')}`**"]
            if badge := _badge(record.verdicts):
                lines += ["", badge]
            if (result := record.result) is not None:
                lines += ["", _fence(result.output) if result.ok else f"(not sent: {result.error})"]
            lines.append("")
        lines += ["## Assistant", ""]
        for record in (r for r in turn.tool_calls if not is_attachment_call(r.call.call_id, r.call.name)):
            arguments = json.dumps(record.call.arguments, indent=2, ensure_ascii=False)
            lines += [f"**Tool call `{record.call.name}`**", "", _fence(arguments, "json")]
            if badge := _badge(record.verdicts):
                lines += ["", badge]
            if record.result is not None:
                status = "blocked" if record.result.blocked else ("ok" if record.result.ok else "error")
                lines += ["", f"Result ({status}):", "", _fence(record.result.error or record.result.output)]
            lines.append("")
        if turn.refusal is not None:
            lines += [f"> Refused at {turn.refusal.stage}: {turn.refusal.message}", ""]
        elif turn.error is not None and turn.error.kind == CANCELLED:
            lines += [turn.answer, "", "_(stopped by the user: the answer is kept as far as it was shown)_", ""]
        elif turn.error is not None:
            lines += [f"> Error ({turn.error.kind}): {turn.error.message}", ""]
        else:
            lines += [turn.answer, ""]
        if badge := _badge(turn.output_verdicts):
            lines += [badge, ""]
    return "\n".join(lines).rstrip() + "\n"

"""Showing the agent's events in the conversation: one function for live turns and replayed (resumed) ones."""

from __future__ import annotations

from collections.abc import Sequence

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
from assistant.tui.errors import describe_error
from assistant.tui.widgets.messages import AssistantMessage, AttachmentView, UserMessage
from guards.policy import registry


async def render_event(event: Event, user: UserMessage, reply: AssistantMessage, *, live: bool) -> None:
    """Input verdicts go to the user's message; a call's verdicts (`call_id`) to that call's row (an attachment's
    under the user's message), held until the row exists (a call's own guards run before it is shown, and a call
    they block is never shown: its verdicts go to the reply with the refusal); the rest to the reply.

    Replayed turns skip the token deltas: the caller sets the final answer in one go.
    """
    attachment_event = isinstance(event, ToolCallProposed | ToolResult) and is_attachment_call(
        event.call_id, event.name
    )
    if reply.notice.has_class("pending") and not isinstance(event, GuardVerdict) and not attachment_event:
        reply.notice.display = False
        reply.notice.remove_class("pending")
    if isinstance(event, GuardVerdict) and event.stage == registry.USER_INPUT:
        reply.phase = "the model is answering"
    match event:
        case ToolCallProposed(call_id=call_id) if attachment_event:
            reply.attachment_views[call_id] = await user.add_attachment(event)
            reply.release_held(call_id)
        case GuardVerdict(call_id=str() as call_id) if (view := reply.call_view(call_id)) is not None:
            view.add_verdict(event)
        case GuardVerdict(call_id=str() as call_id):
            reply.held.setdefault(call_id, []).append(event)
        case ToolResult(call_id=call_id) if call_id in reply.attachment_views:
            reply.attachment_views[call_id].show_result(event)
        case TokenDelta(text=text) if live:
            await reply.append(text)
        case GuardVerdict(stage=registry.USER_INPUT):
            user.badge.add(event)
            await user.add_image_verdict(event)  # a guard that saw the message's images: their lines too
        case GuardVerdict():
            reply.add_verdict(event)
        case ToolCallProposed():
            await reply.add_tool_call(event)
            reply.release_held(event.call_id)
        case ApprovalRequested(call_id=call_id) if call_id in reply.tool_views:
            reply.tool_views[call_id].approval_requested(event)
        case ToolResult(call_id=call_id) if call_id in reply.tool_views:
            reply.tool_views[call_id].show_result(event)
        case Refusal(stage=stage, message=message, guard_error=guard_error):
            reply.release_held()
            why = "a guard failed, so the policy blocked it" if guard_error else f"blocked at {stage}"
            reply.show_notice(f"{message}  ({why})", "refusal")
        case Notice(message=message):
            await reply.add_info(message)
        case Error(kind=kind) if kind == CANCELLED:
            reply.release_held()
            for view in reply.tool_views.values():
                view.stop()
            reply.show_notice("■ stopped - the answer is kept as far as it was shown", "stopped")
        case Error(kind=kind, message=message):
            reply.release_held()
            text = message if kind in ("internal", "setup") else describe_error(kind, message)
            reply.show_notice(text, "error")


def mark_unchecked(user: UserMessage, reply: AssistantMessage, *, resumed: bool = False, stopped: bool = False) -> None:
    """Messages no guard looked at say so (an answer only when there is one: a refused turn has none); a turn
    stopped before its input guards finished says that instead (the message was not sent). An image no guard saw
    says it was not sent."""
    unjudged = [view for view in user.image_views.values() if not view.verdicts]
    for view in unjudged:
        view.not_judged("stopped before its guards saw it: not sent" if stopped else "not sent")
    if stopped and not user.badge.verdicts:
        user.badge.mark_unchecked("– stopped before its guards finished: not sent")
    elif any(isinstance(v, AttachmentView) and v.has_class("blocked") for v in user.children):
        user.badge.mark_unchecked("– not sent: its attachment was blocked")
    elif unjudged and not user.badge.verdicts:
        user.badge.mark_unchecked("– not sent: its images were refused")
    elif not resumed:
        user.badge.mark_unchecked()
    if reply.text:
        reply.badge.mark_unchecked()


def final_text(events: Sequence[Event]) -> str | None:
    return next((event.text for event in reversed(events) if isinstance(event, Final)), None)

"""Files attached to the next message (`/attach PATH`, ctrl+o), as the chat shows them.

The file is read when it is attached (`assistant.attachments.read_file`: refused when binary, a link or too big) and
judged when its message is sent (`Assistant.attach`). The chat keeps each one in its transcript as a row of its own:
a ToolCallProposed named `attachment` with the attachment's id, its verdicts (which carry that id as `call_id`) and a
ToolResult; a blocked one ends the turn with a Refusal. Pure functions; no textual import.
"""

from __future__ import annotations

from assistant.attachments import ATTACHMENT_TOOL, Attached, is_attachment_id
from assistant.events import Event, Refusal, ToolCallProposed, ToolResult


def is_attachment_call(call_id: str, name: str) -> bool:
    return name == ATTACHMENT_TOOL and is_attachment_id(call_id)


def attachment_events(attached: Attached) -> list[Event]:
    """The chat's record of one judged attachment (what it shows, and replays from its store)."""
    attachment, call_id = attached.attachment, attached.call_id
    arguments = {"file": str(attachment.path or attachment.name), "characters": len(attachment.text)}
    events: list[Event] = [ToolCallProposed(call_id=call_id, name=ATTACHMENT_TOOL, arguments=arguments)]
    events += attached.verdicts
    if attached.passed:
        events.append(ToolResult(call_id=call_id, name=ATTACHMENT_TOOL, ok=True, output=attachment.text))
        return events
    why = attached.reason or "it was blocked"
    message = f"The attached file {attachment.name} was not sent: {why}. Your message was not sent either."
    events.append(ToolResult(call_id=call_id, name=ATTACHMENT_TOOL, ok=False, output="", blocked=True, error=why))
    events.append(Refusal(stage=attached.stage, message=message, guard_error=attached.guard_error))
    return events

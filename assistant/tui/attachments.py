"""Files attached to the next message (`/attach PATH`, ctrl+o): read, refused when binary or too big, and shaped
as the thread message the model reads.

An attachment is untrusted text, like a tool's output: it passes the `tool_result` path of the guards (Prompt Guard
injection, Llama Guard) before the model sees it, and it enters the thread as a `role: tool` message, which turns on
the untrusted-content rule for the rest of the context window (docs/AGENT.md). Pure functions; no textual import.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

ATTACHMENT_TOOL = "attachment"  # the tool_name of the thread message and the name of its events in the chat
CALL_PREFIX = "attachment-"  # call ids of the chat's attachment events
BYTES_PER_CHAR = 4  # UTF-8: a file bigger than this many bytes per allowed character is refused unread


class AttachmentError(ValueError):
    """The file cannot be attached; the message says which file and why."""


@dataclass(frozen=True)
class Attachment:
    name: str  # the file name as shown and as the model reads it
    path: Path
    text: str

    @property
    def content(self) -> str:
        """Exactly what the model reads (and what the guards judge)."""
        return f"[attached file {self.name}]\n{self.text}"


def read_attachment(path: Path, max_chars: int) -> Attachment:
    """Read a UTF-8 text file of at most `max_chars` characters (the policy's tools.max_result_chars)."""
    path = path.expanduser()
    if not path.exists():
        raise AttachmentError(f"{path}: no such file")
    if not path.is_file():
        raise AttachmentError(f"{path}: not a regular file (only text files can be attached)")
    size = path.stat().st_size
    if size > max_chars * BYTES_PER_CHAR:
        raise AttachmentError(f"{path}: too big ({size:,} bytes); the policy allows at most {max_chars:,} characters "
                              "(tools.max_result_chars)")  # fmt: skip
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise AttachmentError(f"{path}: cannot read it: {exc.strerror or exc}") from exc
    if b"\x00" in data:
        raise AttachmentError(f"{path}: a binary file (it contains NUL bytes); only text files can be attached")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise AttachmentError(f"{path}: not UTF-8 text (byte {exc.start}); only text files can be attached") from exc
    if _looks_binary(text):
        raise AttachmentError(f"{path}: looks binary (mostly control characters); only text files can be attached")
    attachment = Attachment(path.name, path, text)
    if len(attachment.content) > max_chars:
        raise AttachmentError(f"{path}: too long ({len(text):,} characters); the policy allows at most {max_chars:,} "
                              "(tools.max_result_chars)")  # fmt: skip
    return attachment


def _looks_binary(text: str) -> bool:
    sample = text[:4096]
    control = sum(1 for c in sample if ord(c) < 32 and c not in "\n\r\t\f\v\x1b")
    return bool(sample) and control / len(sample) > 0.1


def attachment_message(attachment: Attachment) -> dict[str, Any]:
    """The thread message: a tool result without `notice`, so it counts as untrusted content in the window."""
    return {"role": "tool", "tool_name": ATTACHMENT_TOOL, "content": attachment.content, "attachment": attachment.name}


def is_attachment_call(call_id: str, name: str) -> bool:
    return name == ATTACHMENT_TOOL and call_id.startswith(CALL_PREFIX)

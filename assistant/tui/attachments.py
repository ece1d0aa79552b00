"""Files attached to the next message (`/attach PATH`, ctrl+o): read, refused when binary or too big, and shaped
as the thread message the model reads.

An attachment is untrusted text, like a tool's output: it passes the `tool_result` path of the guards (Prompt Guard
injection, Llama Guard) before the model sees it, and it enters the thread as a `role: tool` message, which turns on
the untrusted-content rule for the rest of the context window (docs/AGENT.md). Pure functions; no textual import.
"""

from __future__ import annotations

import errno
import os
import stat
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
    """Read a UTF-8 text file of at most `max_chars` characters (the policy's tools.max_result_chars).

    A symbolic link is refused, naming its target: `notes.txt -> ~/.ssh/id_ed25519` would otherwise send the key
    under the name `notes.txt`. Folders on the way are resolved, so the name and path shown (to the user, the guards
    and the model) are the file's real ones; the file is opened without following a link (O_NOFOLLOW), so a link
    swapped in after the check is refused too."""
    path = path.expanduser()
    if path.is_symlink():
        raise AttachmentError(f"{path}: a symbolic link (to {_link_target(path)}); links are not attached - attach "
                              "the file it points to by its own path")  # fmt: skip
    if not path.exists():
        raise AttachmentError(f"{path}: no such file")
    real = path.resolve()
    if not real.is_file():
        raise AttachmentError(f"{path}: not a regular file (only text files can be attached)")
    flags = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0)
    try:
        fd = os.open(real, flags)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise AttachmentError(f"{path}: became a symbolic link; links are not attached") from exc
        raise AttachmentError(f"{path}: cannot read it: {exc.strerror or exc}") from exc
    with os.fdopen(fd, "rb") as file:
        info = os.fstat(file.fileno())
        if not stat.S_ISREG(info.st_mode):
            raise AttachmentError(f"{path}: not a regular file (only text files can be attached)")
        limit = max_chars * BYTES_PER_CHAR
        if info.st_size > limit:
            raise AttachmentError(f"{path}: too big ({info.st_size:,} bytes); the policy allows at most "
                                  f"{max_chars:,} characters (tools.max_result_chars)")  # fmt: skip
        try:
            data = file.read(limit + 1)
        except OSError as exc:
            raise AttachmentError(f"{path}: cannot read it: {exc.strerror or exc}") from exc
    if len(data) > limit:
        raise AttachmentError(f"{path}: too big (it grew past {limit:,} bytes while being read)")
    if b"\x00" in data:
        raise AttachmentError(f"{path}: a binary file (it contains NUL bytes); only text files can be attached")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise AttachmentError(f"{path}: not UTF-8 text (byte {exc.start}); only text files can be attached") from exc
    if _looks_binary(text):
        raise AttachmentError(f"{path}: looks binary (mostly control characters); only text files can be attached")
    attachment = Attachment(real.name, real, text)
    if len(attachment.content) > max_chars:
        raise AttachmentError(f"{path}: too long ({len(text):,} characters); the policy allows at most {max_chars:,} "
                              "(tools.max_result_chars)")  # fmt: skip
    return attachment


def _link_target(path: Path) -> str:
    try:
        return str(path.readlink())
    except OSError:
        return "an unreadable target"


def _looks_binary(text: str) -> bool:
    sample = text[:4096]
    control = sum(1 for c in sample if ord(c) < 32 and c not in "\n\r\t\f\v\x1b")
    return bool(sample) and control / len(sample) > 0.1


def attachment_message(attachment: Attachment) -> dict[str, Any]:
    """The thread message: a tool result without `notice`, so it counts as untrusted content in the window."""
    return {"role": "tool", "tool_name": ATTACHMENT_TOOL, "content": attachment.content, "attachment": attachment.name}


def is_attachment_call(call_id: str, name: str) -> bool:
    return name == ATTACHMENT_TOOL and call_id.startswith(CALL_PREFIX)

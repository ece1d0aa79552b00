"""Files given to the assistant as untrusted content (`Assistant.attach`; the chat's `/attach PATH`, ctrl+o): read,
refused when binary or too big, judged, and shaped as the thread message the model reads.

An attachment is untrusted text, like a tool's output: it enters the thread as a `role: tool` message, so it takes
that role's path of the guards (`guards.runtime.gate.ROLE_PATHS`: Prompt Guard injection, Llama Guard) before the
model sees it, and it turns on the untrusted-content rule for the rest of the context window (docs/AGENT.md).
"""

from __future__ import annotations

import errno
import os
import stat
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from assistant.agent.provenance import MessageDict
from assistant.agent.rejudge import judge_message
from assistant.events import GuardVerdict
from guards.verdict import StageResult

ATTACHMENT_TOOL = "attachment"  # the tool_name of the thread message (and the name of the chat's attachment rows)
ID_PREFIX = "attachment-"  # the ids an attachment's verdicts carry as their `call_id`
BYTES_PER_CHAR = 4  # UTF-8: a file bigger than this many bytes per allowed character is refused unread


class AttachmentError(ValueError):
    """The file cannot be attached; the message says which file and why."""


@dataclass(frozen=True)
class Attachment:
    """A file's text, read but not judged yet."""

    name: str  # the file name as shown and as the model reads it
    path: Path | None
    text: str

    @property
    def content(self) -> str:
        """Exactly what the model reads (and what the guards judge)."""
        return f"[attached file {self.name}]\n{self.text}"

    def message(self) -> MessageDict:
        """The thread message: a tool result without `notice`, so it counts as untrusted content in the window."""
        return {"role": "tool", "tool_name": ATTACHMENT_TOOL, "content": self.content, "attachment": self.name}


@dataclass(frozen=True)
class Attached:
    """An attachment after its guards: `message` (sealed with its judgement) goes into a thread when it passed
    (`Assistant.append_messages`); otherwise `stage` stopped it, or a guard failed (`guard_error`: fail closed)."""

    attachment: Attachment
    call_id: str  # what its verdicts carry as `call_id`
    verdicts: tuple[GuardVerdict, ...]
    outcome: str  # pass, block or error (guards.runtime.gate.Outcome)
    stage: str = ""  # the stage that stopped it; "" when it passed
    message: MessageDict | None = None

    @property
    def passed(self) -> bool:
        return self.outcome == "pass"

    @property
    def guard_error(self) -> bool:
        return self.outcome == "error"

    @property
    def reason(self) -> str | None:
        """Why it was not let in, for people; None when it passed."""
        if self.passed:
            return None
        return "a guard failed" if self.guard_error else f"the {self.stage} guards blocked it"


async def judge_attachment(pipeline: Any, attachment: Attachment, *, thread_id: str | None = None) -> Attached:
    """Judge the attachment's thread message on its role's path, as any message that arrives without a judgement
    (`assistant.agent.rejudge.judge_message`); its verdicts carry a fresh attachment id."""
    call_id = f"{ID_PREFIX}{uuid.uuid4().hex[:12]}"
    verdicts: list[GuardVerdict] = []

    def collect(result: StageResult) -> None:
        verdicts.extend(GuardVerdict.of(verdict, call_id=call_id) for verdict in result.verdicts)

    sealed, judgement = await judge_message(pipeline, attachment.message(), thread_id=thread_id, on_result=collect)
    stage = "" if judgement.passed else judgement.stage
    return Attached(attachment, call_id, tuple(verdicts), judgement.outcome, stage, sealed)


def is_attachment_id(call_id: str | None) -> bool:
    return call_id is not None and call_id.startswith(ID_PREFIX)


def read_attachment(source: Path | str | bytes, max_chars: int, *, name: str | None = None) -> Attachment:
    """A UTF-8 text file of at most `max_chars` characters (the policy's tools.max_result_chars): a path, or the
    file's bytes with its `name`."""
    if isinstance(source, bytes):
        if not name:
            raise AttachmentError("an attachment given as bytes needs a name")
        if len(source) > max_chars * BYTES_PER_CHAR:
            raise AttachmentError(
                f"{name}: too big ({len(source):,} bytes); the policy allows at most "
                f"{max_chars:,} characters (tools.max_result_chars)"
            )
        return _checked(Attachment(name, None, _decode(source, name)), name, max_chars)
    return read_file(Path(source), max_chars)


def read_file(path: Path, max_chars: int) -> Attachment:
    """Read a UTF-8 text file of at most `max_chars` characters.

    A symbolic link is refused, naming its target: `notes.txt -> ~/.ssh/id_ed25519` would otherwise send the key
    under the name `notes.txt`. Folders on the way are resolved, so the name and path shown (to the user, the guards
    and the model) are the file's real ones; the file is opened without following a link (O_NOFOLLOW), so a link
    swapped in after the check is refused too."""
    path = path.expanduser()
    if path.is_symlink():
        raise AttachmentError(
            f"{path}: a symbolic link (to {_link_target(path)}); links are not attached - attach "
            "the file it points to by its own path"
        )
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
            raise AttachmentError(
                f"{path}: too big ({info.st_size:,} bytes); the policy allows at most "
                f"{max_chars:,} characters (tools.max_result_chars)"
            )
        try:
            data = file.read(limit + 1)
        except OSError as exc:
            raise AttachmentError(f"{path}: cannot read it: {exc.strerror or exc}") from exc
    if len(data) > limit:
        raise AttachmentError(f"{path}: too big (it grew past {limit:,} bytes while being read)")
    return _checked(Attachment(real.name, real, _decode(data, str(path))), str(path), max_chars)


def _decode(data: bytes, label: str) -> str:
    if b"\x00" in data:
        raise AttachmentError(f"{label}: a binary file (it contains NUL bytes); only text files can be attached")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise AttachmentError(f"{label}: not UTF-8 text (byte {exc.start}); only text files can be attached") from exc
    if _looks_binary(text):
        raise AttachmentError(f"{label}: looks binary (mostly control characters); only text files can be attached")
    return text


def _checked(attachment: Attachment, label: str, max_chars: int) -> Attachment:
    if len(attachment.content) > max_chars:
        raise AttachmentError(
            f"{label}: too long ({len(attachment.text):,} characters); the policy allows at most "
            f"{max_chars:,} (tools.max_result_chars)"
        )
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

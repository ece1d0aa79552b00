"""Append-only, hash-chained JSONL audit log.

Each line is one record: `seq` (0, 1, 2, ...), `ts` (UTC), `kind`, the caller's fields, `prev_hash` (the previous
record's `hash`; 64 zeros for the first) and `hash` = sha256 of the canonical JSON of the record without `hash`
(sorted keys, no spaces, UTF-8). Editing, deleting, inserting or reordering a record breaks a hash or a link, which
`verify_audit_log` reports. (Someone who rewrites every later record too is not detectable without an outside
anchor, such as the last hash recorded elsewhere.)

Durability and concurrency: every record is written with one `write`, flushed and fsynced before `append` returns,
under a thread lock and an exclusive `flock` on the file, so writers in several threads or processes interleave
whole records and each continues the chain from the file's real last record.

Torn tail: a crash (kill -9, power loss) mid-write can leave a last line without its newline. `verify_audit_log`
verifies everything before it and reports the fragment as `torn_tail` - a warning, not tampering (exit 0), since no
record was acknowledged as written. The next writer to open the log cuts the fragment off and appends a
`torn_tail_recovered` record (its offset, length and sha256), so the chain stays whole and the loss stays visible.

Texts are stored per policy: `full` (the text), `hash` (its sha256 and length) or `redact` (its length only).
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from guards.verdict import Verdict

TextStorage = Literal["full", "hash", "redact"]
GENESIS_HASH = "0" * 64
_RESERVED = frozenset({"seq", "ts", "kind", "prev_hash", "hash"})
_TAIL_CHUNK = 64 * 1024
_path_locks: dict[str, threading.Lock] = {}
_path_locks_guard = threading.Lock()


class AuditLogUnreadable(OSError):
    """The audit log cannot be opened or read at all (missing, a directory, no permission)."""


def canonical_json(record: Mapping[str, Any]) -> bytes:
    # A lone surrogate (argv with invalid UTF-8, a JSON `\udcff` escape in a tool result) is written as its JSON
    # escape, which reads back as the same string: the record is still written, hashed and verified.
    text = json.dumps(record, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    return text.encode("utf-8", "backslashreplace")


def record_hash(record: Mapping[str, Any]) -> str:
    """sha256 over the canonical JSON of the record without its own `hash`."""
    return hashlib.sha256(canonical_json({k: v for k, v in record.items() if k != "hash"})).hexdigest()


def stored_text(text: str, storage: TextStorage) -> dict[str, Any]:
    """How a text appears in a record under the policy's `audit.texts` setting."""
    if storage == "full":
        return {"storage": "full", "chars": len(text), "text": text}
    if storage == "hash":
        return {
            "storage": "hash",
            "chars": len(text),
            "sha256": hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest(),
        }
    if storage == "redact":
        return {"storage": "redact", "chars": len(text)}
    raise ValueError(f"unknown text storage {storage!r}; expected full, hash or redact")


def _lock_for(path: Path) -> threading.Lock:
    with _path_locks_guard:
        return _path_locks.setdefault(str(path), threading.Lock())


@dataclass
class AuditLog:
    """Writer for one audit log file. Safe to share between threads; other processes may write the same file."""

    path: Path
    texts: TextStorage = "hash"
    _fd: int | None = field(default=None, init=False, repr=False)

    def __post_init__(self) -> None:
        self.path = Path(self.path).expanduser().resolve()
        stored_text("", self.texts)  # validates the storage mode now, not at the first record

    def open(self) -> AuditLog:
        with _lock_for(self.path):
            self._open_locked()
        return self

    def _open_locked(self) -> int:
        # Under the path lock: two threads opening at once would leak a descriptor that still holds the flock.
        if self._fd is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_APPEND, 0o600)
        return self._fd

    def close(self) -> None:
        with _lock_for(self.path):
            if self._fd is not None:
                os.close(self._fd)
                self._fd = None

    def __enter__(self) -> AuditLog:
        return self.open()

    def __exit__(self, *exc: object) -> None:
        self.close()

    def append(self, kind: str, *, text: str | None = None, **fields: Any) -> dict[str, Any]:
        """Write one record durably and return it (with seq, ts, prev_hash and hash)."""
        clash = _RESERVED & set(fields)
        if clash:
            raise ValueError(f"audit record fields {sorted(clash)} are reserved")
        if text is not None:
            fields["text"] = stored_text(text, self.texts)
        with _lock_for(self.path):
            fd = self._open_locked()
            fcntl.flock(fd, fcntl.LOCK_EX)
            try:
                last = self._recover_tail(fd)
                return self._write(fd, last, kind, fields)
            finally:
                fcntl.flock(fd, fcntl.LOCK_UN)

    def append_verdict(
        self, verdict: Verdict, *, thread_id: str | None = None, text: str | None = None, event: str = "verdict"
    ) -> dict[str, Any]:
        return self.append(event, stage=verdict.stage, thread_id=thread_id, verdict=verdict.to_dict(), text=text)

    def _write(self, fd: int, last: Mapping[str, Any] | None, kind: str, fields: Mapping[str, Any]) -> dict[str, Any]:
        record: dict[str, Any] = {
            "seq": 0 if last is None else int(last["seq"]) + 1,
            "ts": datetime.now(UTC).isoformat(timespec="microseconds"),
            "kind": kind,
            **fields,
            "prev_hash": GENESIS_HASH if last is None else str(last["hash"]),
        }
        record["hash"] = record_hash(record)
        line = canonical_json(record) + b"\n"
        written = os.write(fd, line)  # O_APPEND: one write lands at the end as a whole
        if written != len(line):
            raise OSError(f"short write to audit log {self.path}: {written} of {len(line)} bytes")
        os.fsync(fd)
        return record

    def _recover_tail(self, fd: int) -> dict[str, Any] | None:
        """The last complete record; a torn fragment after it is cut off and recorded (caller holds the locks)."""
        size = os.fstat(fd).st_size
        last_line, end = _last_complete_line(fd, size)
        last = _parse_record(last_line) if last_line is not None else None
        if last_line is not None and last is None:
            raise ValueError(
                f"audit log {self.path} ends with a record that is not valid; run `assistant audit verify`"
            )
        if end == size:
            return last
        fragment = os.pread(fd, size - end, end)
        os.ftruncate(fd, end)
        os.fsync(fd)
        info = {"offset": end, "bytes": len(fragment), "sha256": hashlib.sha256(fragment).hexdigest()}
        return self._write(fd, last, "torn_tail_recovered", {"fragment": info})


def _last_complete_line(fd: int, size: int) -> tuple[bytes | None, int]:
    """(last newline-terminated line without its newline, or None; offset just after it)."""
    end = size
    buffer = b""
    position = size
    # Find the last newline: everything after it is a torn fragment (or nothing).
    while position > 0:
        start = max(0, position - _TAIL_CHUNK)
        buffer = os.pread(fd, position - start, start) + buffer
        position = start
        cut = buffer.rfind(b"\n")
        if cut >= 0:
            end = position + cut + 1
            break
    else:
        return None, 0
    # Then the newline before it: the line between them is the last complete record.
    line_end = end - 1
    while True:
        previous = buffer.rfind(b"\n", 0, line_end - position)
        if previous >= 0:
            return buffer[previous + 1 : line_end - position], end
        if position == 0:
            return buffer[: line_end - position], end
        start = max(0, position - _TAIL_CHUNK)
        buffer = os.pread(fd, position - start, start) + buffer
        position = start


def _parse_record(line: bytes) -> dict[str, Any] | None:
    """A record whose own hash checks out, else None."""
    try:
        record = json.loads(line)
    except (json.JSONDecodeError, UnicodeDecodeError):
        return None
    if (
        not isinstance(record, dict)
        or not isinstance(record.get("seq"), int)
        or not isinstance(record.get("hash"), str)
    ):
        return None
    try:
        return record if record_hash(record) == record["hash"] else None
    except ValueError:
        return None


# ---------------------------------------------------------------------------------------------------- verification


@dataclass(frozen=True)
class AuditProblem:
    line: int
    seq: int | None
    kind: Literal["unparseable", "hash_mismatch", "broken_link", "seq_mismatch"]
    message: str


@dataclass(frozen=True)
class AuditReport:
    path: str
    records: int
    problems: tuple[AuditProblem, ...] = ()
    torn_tail_bytes: int = 0
    last_hash: str = GENESIS_HASH

    @property
    def intact(self) -> bool:
        return not self.problems

    def to_dict(self) -> dict[str, Any]:
        return {
            "path": self.path,
            "intact": self.intact,
            "records": self.records,
            "torn_tail_bytes": self.torn_tail_bytes,
            "last_hash": self.last_hash,
            "problems": [p.__dict__ for p in self.problems],
        }


def verify_audit_log(path: str | Path) -> AuditReport:
    """Check every record's hash, link and sequence number. Raises AuditLogUnreadable if the file cannot be read."""
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise AuditLogUnreadable(f"cannot read audit log {path}: {exc.strerror or exc}") from exc
    complete, newline, torn = data.rpartition(b"\n")  # no newline at all: everything is a torn fragment
    lines = complete.split(b"\n") if newline else []
    problems: list[AuditProblem] = []
    expected_prev, expected_seq, records = GENESIS_HASH, 0, 0
    for number, line in enumerate(lines, start=1):
        records += 1
        try:
            record = json.loads(line)
        except ValueError:  # not JSON, or not UTF-8
            record = None
        if not isinstance(record, dict) or not isinstance(record.get("hash"), str):
            problems.append(AuditProblem(number, None, "unparseable", f"line {number} is not an audit record"))
            continue
        seq = record.get("seq") if isinstance(record.get("seq"), int) else None
        try:
            actual = record_hash(record)
        except ValueError:
            actual = ""
        if actual != record["hash"]:
            problems.append(AuditProblem(number, seq, "hash_mismatch", f"record seq {seq} (line {number}) was edited"))
        if record.get("prev_hash") != expected_prev:
            problems.append(AuditProblem(number, seq, "broken_link",
                f"record seq {seq} (line {number}) does not follow the record before it "
                "(a record was deleted, inserted or reordered)"))  # fmt: skip
        if seq != expected_seq:
            problems.append(AuditProblem(number, seq, "seq_mismatch",
                f"record at line {number} has seq {seq}, expected {expected_seq}"))  # fmt: skip
        expected_prev = str(record["hash"])
        expected_seq = (seq if seq is not None else expected_seq) + 1
    return AuditReport(str(path), records, tuple(problems), len(torn), expected_prev)

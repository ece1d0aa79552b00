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

Truncation: after every record the head file beside the log (`<log>.head`: last seq and hash, see audit_format) is
replaced, atomically and fsynced, by a writer thread (a replacement costs two fsyncs, about 10 ms here: off the
caller's path; only the newest pending head is written; `flush`/`close` wait for it). The head never names a record
that is not already durable, so a crash leaves it at most behind the log, never ahead. The head is also sent at
once to the deployer's outside sink, if any (syslog). A writer refuses to continue a log that is behind its head
(records were deleted from its end); `verify_audit_log` reports it.

Texts are stored per policy: `full` (the text), `hash` (its sha256 and length) or `redact` (its length only).
Verification (strict parsing, head comparison, counts per kind) lives in `guards.audit.verify`.

Replicas (docs/DEPLOY.md): processes on different hosts cannot share one chain, so each keeps its own. With a replica
id (`replica=`, default `$ASSISTANT_REPLICA_ID`) the file gets it in its name (`audit.jsonl` -> `audit.a.jsonl`) and
every record carries `"replica": "a"`; `assistant audit verify` takes the files together.
"""

from __future__ import annotations

import atexit
import contextlib
import fcntl
import hashlib
import os
import re
import threading
import weakref
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from guards.audit.format import (
    GENESIS_HASH,
    Head,
    RecordFormatError,
    canonical_json,
    head_path,
    parse_record_strict,
    read_head,
    record_hash,
    remove_stale_temporaries,
    write_head,
)
from guards.audit.verify import AuditLogUnreadable, AuditProblem, AuditReport, verify_audit_log
from guards.verdict import Verdict

TextStorage = Literal["full", "hash", "redact"]
HeadSink = Callable[[Path, Head], None]  # called with the log's path and its new head after every record
_RESERVED = frozenset({"seq", "ts", "kind", "prev_hash", "hash", "replica"})
REPLICA_ENV = "ASSISTANT_REPLICA_ID"  # names this process's chain in a multi-replica deployment
_REPLICA_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
_TAIL_CHUNK = 64 * 1024
_path_locks: dict[str, threading.Lock] = {}
_path_locks_guard = threading.Lock()


def replica_from_env() -> str | None:
    return os.environ.get(REPLICA_ENV) or None


def replica_log_path(path: Path, replica: str) -> Path:
    """`audit.jsonl` -> `audit.<replica>.jsonl` (`audit` -> `audit.<replica>`)."""
    if not _REPLICA_ID.fullmatch(replica):
        raise ValueError(f"replica id {replica!r} must be 1-64 letters, digits, '_', '.' or '-' (not starting with one "
                         f"of the last three); set {REPLICA_ENV} accordingly")
    return path.with_name(f"{path.stem}.{replica}{path.suffix}")


class AuditLogTampered(ValueError):
    """The log does not reach its head (records were deleted from its end) or ends with an invalid record."""


def syslog_head_sink(ident: str = "assistant-audit") -> HeadSink:
    """An outside copy of the head: one syslog line (facility AUTH) per record, for the deployer's log collector."""
    import syslog

    def send(path: Path, head: Head) -> None:
        syslog.openlog(ident, 0, syslog.LOG_AUTH)
        syslog.syslog(syslog.LOG_INFO, f"audit head log={path} seq={head.seq} hash={head.hash}")

    return send


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


def arguments_text(arguments: Mapping[str, Any]) -> str:
    """A tool call's arguments as one text, the canonical JSON of the audit records (sorted keys, no spaces): the
    `arguments` of `approval_request`, `approval_decision` and `tool_run`, stored like any text (`audit.texts`)."""
    return canonical_json(dict(arguments)).decode("utf-8")


def _lock_for(path: Path) -> threading.Lock:
    with _path_locks_guard:
        return _path_locks.setdefault(str(path), threading.Lock())


@dataclass(eq=False)  # identity: live logs are tracked in a WeakSet to flush their heads at exit
class AuditLog:
    """Writer for one audit log file. Safe to share between threads; other processes may write the same file."""

    path: Path
    texts: TextStorage = "hash"
    head_sink: HeadSink | None = None
    replica: str | None = field(default_factory=replica_from_env)  # one chain per replica: in file name and records
    _fd: int | None = field(default=None, init=False, repr=False)
    _heads: _HeadWriter = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self.path = Path(self.path).expanduser().resolve()
        if self.replica is not None:
            self.path = replica_log_path(self.path, self.replica)
        stored_text("", self.texts)  # validates the storage mode now, not at the first record
        self._heads = _HeadWriter(head_path(self.path), self.path.name)
        _open_logs.add(self)

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

    def flush(self) -> None:
        """Wait until the head file names the last record written here."""
        self._heads.flush()

    def close(self) -> None:
        self._heads.flush()
        with _lock_for(self.path):
            if self._fd is not None:
                os.close(self._fd)
                self._fd = None

    def __enter__(self) -> AuditLog:
        return self.open()

    def __exit__(self, *exc: object) -> None:
        self.close()

    def append(
        self, kind: str, *, text: str | None = None, arguments: str | None = None, **fields: Any
    ) -> dict[str, Any]:
        """Write one record durably and return it (with seq, ts, prev_hash and hash). `text` and `arguments` (a tool
        call's, see `arguments_text`) are stored per `texts`."""
        clash = _RESERVED & set(fields)
        if clash:
            raise ValueError(f"audit record fields {sorted(clash)} are reserved")
        if text is not None:
            fields["text"] = stored_text(text, self.texts)
        if arguments is not None:
            fields["arguments"] = stored_text(arguments, self.texts)
        with _lock_for(self.path):
            self._heads.raise_failure()
            fd = self._open_locked()
            fcntl.flock(fd, fcntl.LOCK_EX)
            try:
                last = self._recover_tail(fd)
                self._check_head(last)
                record = self._write(fd, last, kind, fields)
                head = Head(record["seq"], record["hash"])
                self._heads.submit(head)
                if self.head_sink is not None:
                    self.head_sink(self.path, head)
                return record
            finally:
                fcntl.flock(fd, fcntl.LOCK_UN)

    def append_verdict(
        self, verdict: Verdict, *, thread_id: str | None = None, text: str | None = None, event: str = "verdict",
        images: tuple[str, ...] = (),
    ) -> dict[str, Any]:
        """`images`: the sha256 of each image judged with the text (digests only, never the bytes)."""
        extra: dict[str, Any] = {"images": list(images)} if images else {}
        return self.append(event, stage=verdict.stage, thread_id=thread_id, verdict=verdict.to_dict(), text=text,
                           **extra)

    def _write(self, fd: int, last: Mapping[str, Any] | None, kind: str, fields: Mapping[str, Any]) -> dict[str, Any]:
        record: dict[str, Any] = {
            "seq": 0 if last is None else int(last["seq"]) + 1,
            "ts": datetime.now(UTC).isoformat(timespec="microseconds"),
            "kind": kind,
            **({"replica": self.replica} if self.replica is not None else {}),
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

    def _check_head(self, last: Mapping[str, Any] | None) -> None:
        """Refuse to extend a log that lost records at its end: a new head would hide the loss."""
        try:
            head = read_head(head_path(self.path))
        except ValueError as exc:
            raise AuditLogTampered(f"{exc}; run `assistant audit verify {self.path}`") from exc
        if head is None:
            return  # a new log (or one written before head files existed)
        last_seq = -1 if last is None else int(last["seq"])
        if last_seq < head.seq or (last is not None and last_seq == head.seq and last["hash"] != head.hash):
            raise AuditLogTampered(
                f"audit log {self.path} ends at seq {last_seq} but its head says seq {head.seq} ({head.hash[:12]}...): "
                f"records were removed or rewritten; run `assistant audit verify {self.path}`"
            )

    def _recover_tail(self, fd: int) -> dict[str, Any] | None:
        """The last complete record; a torn fragment after it is cut off and recorded (caller holds the locks)."""
        size = os.fstat(fd).st_size
        last_line, end = _last_complete_line(fd, size)
        last = _parse_record(last_line) if last_line is not None else None
        if last_line is not None and last is None:
            raise AuditLogTampered(
                f"audit log {self.path} ends with a record that is not valid; run `assistant audit verify`"
            )
        if end == size:
            return last
        fragment = os.pread(fd, size - end, end)
        os.ftruncate(fd, end)
        os.fsync(fd)
        info = {"offset": end, "bytes": len(fragment), "sha256": hashlib.sha256(fragment).hexdigest()}
        return self._write(fd, last, "torn_tail_recovered", {"fragment": info})


class _HeadWriter:
    """Replaces one head file on a thread of its own; the newest submitted head wins."""

    def __init__(self, path: Path, log_name: str) -> None:
        self.path, self.log_name = path, log_name
        self._cond = threading.Condition()
        self._pending: Head | None = None
        self._busy = False
        self._thread: threading.Thread | None = None
        self._failure: OSError | None = None
        self._cleaned = False

    def submit(self, head: Head) -> None:
        with self._cond:
            if not self._cleaned:
                self._cleaned = True
                remove_stale_temporaries(self.path)
            if self._pending is None or head.seq > self._pending.seq:
                self._pending = head
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="audit-head", daemon=True)
                self._thread.start()
            self._cond.notify_all()

    def _run(self) -> None:
        while True:
            with self._cond:
                if self._pending is None and not self._cond.wait_for(lambda: self._pending is not None, 5.0):
                    self._thread = None  # idle: the next submit starts a new thread
                    return
                head, self._pending, self._busy = self._pending, None, True
            try:
                assert head is not None
                write_head(self.path, head, self.log_name, writer=f"{os.getpid()}-{id(self):x}")
            except OSError as exc:
                self._failure = exc  # raised into the next append: records must not go on without their head
            finally:
                with self._cond:
                    self._busy = False
                    self._cond.notify_all()

    def flush(self, timeout_s: float = 30.0) -> None:
        with self._cond:
            self._cond.wait_for(lambda: self._pending is None and not self._busy, timeout_s)
        self.raise_failure()

    def raise_failure(self) -> None:
        failure, self._failure = self._failure, None
        if failure is not None:
            raise OSError(f"cannot replace the audit head file {self.path}: {failure}") from failure


_open_logs: weakref.WeakSet[AuditLog] = weakref.WeakSet()


@atexit.register
def _flush_heads() -> None:
    for log in list(_open_logs):
        with contextlib.suppress(OSError):  # exiting: nothing left to refuse; `audit verify` shows the head behind
            log.flush()


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
    """A strictly valid record whose own hash checks out, else None."""
    try:
        record = parse_record_strict(line)
    except RecordFormatError:
        return None
    if not isinstance(record.get("seq"), int):
        return None
    return record if record_hash(record) == record["hash"] else None


__all__ = [
    "GENESIS_HASH", "AuditLog", "AuditLogTampered", "AuditLogUnreadable", "AuditProblem", "AuditReport", "HeadSink",
    "arguments_text",
    "canonical_json", "record_hash", "stored_text", "syslog_head_sink", "verify_audit_log",
]

"""The audit log's byte format, pure functions: canonical JSON, record hashes, strict parsing, the head file.

A record is exactly one line of canonical JSON (sorted keys, no spaces, UTF-8, no NaN/Infinity). Verification
accepts only that: a duplicate key (`{"verdict": allow, "verdict": block}` reads differently in different tools),
extra whitespace or any other non-canonical spelling makes the record invalid, so one line has one meaning.

The head file (`<log>.head`, beside the log) holds the last record's `seq` and `hash`. It is replaced atomically
(temporary file, fsync, rename, fsync of the folder) after every record, so deleting the log's last records is
detected: the log no longer reaches its head.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

GENESIS_HASH = "0" * 64
HEAD_SUFFIX = ".head"


FormatProblem = Literal["unparseable", "duplicate_key", "non_canonical"]


class RecordFormatError(ValueError):
    """A line that is not one strictly valid audit record. `kind` names the problem for reports."""

    def __init__(self, kind: FormatProblem, message: str) -> None:
        super().__init__(message)
        self.kind = kind


def canonical_json(record: Mapping[str, Any]) -> bytes:
    # A lone surrogate (argv with invalid UTF-8, a JSON `\udcff` escape in a tool result) is written as its JSON
    # escape, which reads back as the same string: the record is still written, hashed and verified.
    text = json.dumps(record, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    return text.encode("utf-8", "backslashreplace")


def record_hash(record: Mapping[str, Any]) -> str:
    """sha256 over the canonical JSON of the record without its own `hash`."""
    return hashlib.sha256(canonical_json({k: v for k, v in record.items() if k != "hash"})).hexdigest()


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            raise RecordFormatError("duplicate_key", f"key {key!r} appears twice")
        result[key] = value
    return result


def _no_constant(name: str) -> Any:
    raise RecordFormatError("unparseable", f"{name} is not valid JSON")


def parse_record_strict(line: bytes) -> dict[str, Any]:
    """The record a line holds, or RecordFormatError: not UTF-8, not a JSON object, a duplicate key, NaN/Infinity,
    or not byte-for-byte its canonical form (whitespace, key order, escapes, number spelling)."""
    try:
        text = line.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise RecordFormatError("unparseable", f"not UTF-8 ({exc.reason} at byte {exc.start})") from None
    try:
        record = json.loads(text, object_pairs_hook=_no_duplicates, parse_constant=_no_constant)
    except RecordFormatError:
        raise
    except ValueError as exc:
        raise RecordFormatError("unparseable", f"not JSON ({exc})") from None
    if not isinstance(record, dict) or not isinstance(record.get("hash"), str):
        raise RecordFormatError("unparseable", "not an audit record (a JSON object with a hash)")
    try:
        canonical = canonical_json(record)
    except ValueError as exc:
        raise RecordFormatError("unparseable", f"not representable as canonical JSON ({exc})") from None
    if canonical != line:
        raise RecordFormatError("non_canonical", "not in canonical form (extra whitespace, key order or escapes)")
    return record


# ------------------------------------------------------------------------------------------------------- head file


@dataclass(frozen=True)
class Head:
    """The log's last record as of the last write: its sequence number and hash."""

    seq: int
    hash: str

    def to_bytes(self, log_name: str) -> bytes:
        return canonical_json({"log": log_name, "seq": self.seq, "hash": self.hash}) + b"\n"


class HeadUnreadable(ValueError):
    """The head file exists but is not a valid head."""


def head_path(log_path: Path) -> Path:
    return log_path.with_name(log_path.name + HEAD_SUFFIX)


def read_head(path: Path) -> Head | None:
    """The head stored at `path`, None if there is no head file; HeadUnreadable if it is not a valid head."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise HeadUnreadable(f"cannot read head file {path}: {exc.strerror or exc}") from exc
    try:
        value = json.loads(data, object_pairs_hook=_no_duplicates, parse_constant=_no_constant)
    except ValueError as exc:
        raise HeadUnreadable(f"head file {path} is not valid: {exc}") from None
    if (
        not isinstance(value, dict)
        or not isinstance(value.get("seq"), int)
        or isinstance(value.get("seq"), bool)
        or value["seq"] < 0
        or not isinstance(value.get("hash"), str)
        or len(value["hash"]) != 64
    ):
        raise HeadUnreadable(f"head file {path} does not hold a seq and a sha256 hash")
    return Head(value["seq"], value["hash"])


def write_head(path: Path, head: Head, log_name: str, *, writer: str = "") -> None:
    """Replace the head file atomically and durably. Writers in other threads or processes use their own temporary
    file (`writer` names it: `<pid>-<id>`); the rename is atomic, so a reader sees one head or the other."""
    temporary = path.with_name(f".{path.name}.{writer or os.getpid()}.tmp")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        data = head.to_bytes(log_name)
        if os.write(fd, data) != len(data):
            raise OSError(f"short write to {temporary}")
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(temporary, path)
    folder = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(folder)  # the rename itself must survive a power loss
    finally:
        os.close(folder)


def remove_stale_temporaries(path: Path) -> None:
    """Temporary head files of writers that died mid-replacement (their process no longer exists)."""
    for stale in path.parent.glob(f".{path.name}.*.tmp"):
        pid = stale.name[len(path.name) + 2 :].split("-", 1)[0].split(".", 1)[0]
        if pid.isdigit() and int(pid) != os.getpid() and not _alive(int(pid)):
            stale.unlink(missing_ok=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True

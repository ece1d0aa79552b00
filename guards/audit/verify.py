"""Verify an audit log: every record strictly parsed, hashed, linked and numbered, and the log checked against its head.

Problems (each makes the log tampered): `unparseable` (not UTF-8, not a JSON object), `duplicate_key`,
`non_canonical` (whitespace, key order, escapes: one line must have one meaning), `hash_mismatch` (edited),
`broken_link` (deleted, inserted, reordered), `seq_mismatch`, `truncated` (the log ends before its head: the records
between are named as missing), `head_mismatch` (the record at the head's seq is not the one the head recorded),
`head_invalid` (a head file that is not a head). A missing head file is a warning (logs written before head files
existed have none); a log that goes past its head is normal after a crash between the two writes.
"""

from __future__ import annotations

import collections
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from guards.audit.format import (
    GENESIS_HASH,
    Head,
    HeadUnreadable,
    RecordFormatError,
    head_path,
    parse_record_strict,
    read_head,
    record_hash,
)

ProblemKind = Literal[
    "unparseable", "duplicate_key", "non_canonical", "hash_mismatch", "broken_link", "seq_mismatch", "truncated",
    "head_mismatch", "head_invalid",
]
HeadStatus = Literal["match", "behind", "missing", "truncated", "mismatch", "invalid", "unchecked"]


class AuditLogUnreadable(OSError):
    """The audit log cannot be opened or read at all (missing, a directory, no permission)."""


@dataclass(frozen=True)
class AuditProblem:
    line: int
    seq: int | None
    kind: ProblemKind
    message: str


@dataclass(frozen=True)
class HeadCheck:
    file: str
    status: HeadStatus
    seq: int | None = None
    hash: str | None = None
    missing: tuple[int, int] | None = None  # first and last seq of records deleted from the end

    def to_dict(self) -> dict[str, Any]:
        return {"file": self.file, "status": self.status, "seq": self.seq, "hash": self.hash,
                "missing": list(self.missing) if self.missing else None}


@dataclass(frozen=True)
class AuditReport:
    path: str
    records: int
    problems: tuple[AuditProblem, ...] = ()
    torn_tail_bytes: int = 0
    last_hash: str = GENESIS_HASH
    kinds: dict[str, int] = field(default_factory=dict)  # records per kind, sorted by kind
    head: HeadCheck | None = None
    replicas: tuple[str, ...] = ()  # the `replica` ids the records carry (one per chain in a multi-replica setup)

    @property
    def intact(self) -> bool:
        return not self.problems

    def to_dict(self) -> dict[str, Any]:
        return {
            "path": self.path,
            "intact": self.intact,
            "records": self.records,
            "kinds": dict(self.kinds),
            "torn_tail_bytes": self.torn_tail_bytes,
            "last_hash": self.last_hash,
            "head": None if self.head is None else self.head.to_dict(),
            "replicas": list(self.replicas),
            "problems": [p.__dict__ for p in self.problems],
        }


def verify_audit_log(path: str | Path, *, head: bool | str | Path = True) -> AuditReport:
    """Check every record and compare the log with its head (`head=True`: `<path>.head`; a path: that file, e.g. a
    copy kept elsewhere; False: no head check). Raises AuditLogUnreadable if the log cannot be read."""
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise AuditLogUnreadable(f"cannot read audit log {path}: {exc.strerror or exc}") from exc
    complete, newline, torn = data.rpartition(b"\n")  # no newline at all: everything is a torn fragment
    lines = complete.split(b"\n") if newline else []
    problems: list[AuditProblem] = []
    kinds: collections.Counter[str] = collections.Counter()
    replicas: set[str] = set()
    hashes: dict[int, str] = {}  # seq -> hash, to compare with the head
    expected_prev, expected_seq, last_seq = GENESIS_HASH, 0, -1
    for number, line in enumerate(lines, start=1):
        record, problem = _parse(line, number)
        if record is None:
            assert problem is not None  # `_parse` names the problem of every line it cannot read
            problems.append(problem)
            kinds["(unparseable)"] += 1
            continue
        kind = record.get("kind")
        kinds[kind if isinstance(kind, str) else "(no kind)"] += 1
        if isinstance(record.get("replica"), str):
            replicas.add(record["replica"])
        seq = record.get("seq") if isinstance(record.get("seq"), int) else None
        try:
            actual = record_hash(record)
        except ValueError:
            actual = ""
        if actual != record["hash"]:
            problems.append(AuditProblem(number, seq, "hash_mismatch", f"record seq {seq} (line {number}) was edited"))
        if problem is not None:  # parsed, but duplicate keys or not canonical
            problems.append(AuditProblem(number, seq, problem.kind, problem.message))
        if record.get("prev_hash") != expected_prev:
            problems.append(AuditProblem(number, seq, "broken_link",
                f"record seq {seq} (line {number}) does not follow the record before it "
                "(a record was deleted, inserted or reordered)"))
        if seq != expected_seq:
            problems.append(AuditProblem(number, seq, "seq_mismatch",
                f"record at line {number} has seq {seq}, expected {expected_seq}"))
        if seq is not None:
            hashes[seq] = str(record["hash"])
            last_seq = seq
        expected_prev = str(record["hash"])
        expected_seq = (seq if seq is not None else expected_seq) + 1
    head_check = None
    if head is not False:
        head_file = head_path(Path(path)) if head is True else Path(head)
        head_check = _check_head(head_file, hashes, last_seq, len(lines), problems)
    return AuditReport(str(path), len(lines), tuple(problems), len(torn), expected_prev,
                       dict(sorted(kinds.items())), head_check, tuple(sorted(replicas)))


def _parse(line: bytes, number: int) -> tuple[dict[str, Any] | None, AuditProblem | None]:
    """(record, None) when strictly valid; (record, problem) when readable but ambiguous; (None, problem)."""
    try:
        return parse_record_strict(line), None
    except RecordFormatError as exc:
        where = f"line {number}"
        if exc.kind == "unparseable":
            return None, AuditProblem(number, None, "unparseable", f"{where} is not an audit record: {exc}")
        lenient = _lenient(line)
        seq = lenient.get("seq") if lenient is not None and isinstance(lenient.get("seq"), int) else None
        problem = AuditProblem(number, seq, exc.kind, f"record seq {seq} ({where}) is invalid: {exc}")
        if lenient is None or not isinstance(lenient.get("hash"), str):
            return None, problem
        return lenient, problem


def _lenient(line: bytes) -> dict[str, Any] | None:
    import json

    try:
        value = json.loads(line)
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


def _check_head(
    head_file: Path, hashes: dict[int, str], last_seq: int, lines: int, problems: list[AuditProblem]
) -> HeadCheck:
    try:
        head: Head | None = read_head(head_file)
    except HeadUnreadable as exc:
        problems.append(AuditProblem(lines, None, "head_invalid", str(exc)))
        return HeadCheck(str(head_file), "invalid")
    if head is None:
        return HeadCheck(str(head_file), "missing")
    if last_seq < head.seq:
        first = last_seq + 1
        missing = f"record {head.seq} is" if first == head.seq else f"records {first}..{head.seq} are"
        problems.append(AuditProblem(lines, None, "truncated",
            f"the log ends at seq {last_seq} but its head ({head_file.name}) says seq {head.seq}: {missing} missing "
            "(deleted from the end of the log)"))
        return HeadCheck(str(head_file), "truncated", head.seq, head.hash, (first, head.seq))
    if hashes.get(head.seq) != head.hash:
        message = f"record seq {head.seq} is not the one its head ({head_file.name}) recorded: the log was rewritten"
        problems.append(AuditProblem(lines, head.seq, "head_mismatch", message))
        return HeadCheck(str(head_file), "mismatch", head.seq, head.hash)
    return HeadCheck(str(head_file), "match" if last_seq == head.seq else "behind", head.seq, head.hash)

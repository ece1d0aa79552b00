"""The hash-chained audit log: chaining, text storage, tampering of every kind, torn tails, concurrent writers."""

from __future__ import annotations

import hashlib
import json
import multiprocessing
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from guards.audit.log import (
    GENESIS_HASH,
    AuditLog,
    AuditLogTampered,
    AuditLogUnreadable,
    canonical_json,
    record_hash,
    verify_audit_log,
)
from guards.verdict import Verdict


def _write(path: Path, count: int, **kwargs: object) -> list[dict[str, object]]:
    with AuditLog(path, **kwargs) as log:  # type: ignore[arg-type]
        return [log.append("event", n=n, thread_id="t1") for n in range(count)]


def _lines(path: Path) -> list[str]:
    return path.read_text().splitlines(keepends=True)


def test_records_chain_and_verify(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    records = _write(path, 3)
    assert [r["seq"] for r in records] == [0, 1, 2]
    assert records[0]["prev_hash"] == GENESIS_HASH
    assert [r["prev_hash"] for r in records[1:]] == [r["hash"] for r in records[:-1]]
    assert all(r["hash"] == record_hash(r) for r in records)
    assert [json.loads(line) for line in _lines(path)] == records
    report = verify_audit_log(path)
    assert (report.intact, report.records, report.last_hash, report.torn_tail_bytes) == (
        True,
        3,
        records[-1]["hash"],
        0,
    )


def test_reopening_continues_the_chain(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    first = _write(path, 2)
    second = _write(path, 2)
    assert [r["seq"] for r in second] == [2, 3] and second[0]["prev_hash"] == first[-1]["hash"]
    assert verify_audit_log(path).intact


@pytest.mark.parametrize(
    ("storage", "expected"),
    [
        ("full", {"storage": "full", "chars": 5, "text": "héllo"}),
        ("hash", {"storage": "hash", "chars": 5, "sha256": hashlib.sha256("héllo".encode()).hexdigest()}),
        ("redact", {"storage": "redact", "chars": 5}),
    ],
)
def test_text_storage(tmp_path: Path, storage: str, expected: dict[str, object]) -> None:
    path = tmp_path / "audit.jsonl"
    with AuditLog(path, texts=storage) as log:  # type: ignore[arg-type]
        record = log.append_verdict(Verdict("user_input", "llama_guard", "allow", 0.1), thread_id="t", text="héllo")
    assert record["text"] == expected
    assert (record["kind"], record["stage"], record["thread_id"], record["verdict"]["guard"]) == (
        "verdict", "user_input", "t", "llama_guard"
    )
    if storage != "full":
        assert "héllo" not in path.read_text()


def test_bad_storage_and_reserved_fields_are_rejected(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="unknown text storage"):
        AuditLog(tmp_path / "a.jsonl", texts="plain")  # type: ignore[arg-type]
    with AuditLog(tmp_path / "a.jsonl") as log, pytest.raises(ValueError, match="reserved"):
        log.append("event", hash="x")


def _tamper(path: Path, edit) -> None:  # type: ignore[no-untyped-def]
    lines = _lines(path)
    edit(lines)
    path.write_text("".join(lines))


def _edit_field(lines: list[str]) -> None:
    record = json.loads(lines[2])
    record["n"] = 99
    lines[2] = json.dumps(record) + "\n"


def _canonical(record: dict[str, object]) -> str:
    return canonical_json(record).decode() + "\n"


def _edit_and_rehash(lines: list[str]) -> None:
    record = json.loads(lines[2])
    record["n"] = 99
    record["hash"] = record_hash(record)
    lines[2] = _canonical(record)


def _insert_forged(lines: list[str]) -> None:
    before = json.loads(lines[1])
    forged = {"seq": 2, "ts": before["ts"], "kind": "event", "n": 7, "prev_hash": before["hash"]}
    forged["hash"] = record_hash(forged)
    lines.insert(2, _canonical(forged))


@pytest.mark.parametrize(
    ("edit", "line", "kind"),
    [
        (_edit_field, 3, "hash_mismatch"),
        (_edit_and_rehash, 4, "broken_link"),  # the edited record is self-consistent; the next one no longer links
        (lambda lines: lines.pop(2), 3, "broken_link"),  # deleted
        (lambda lines: lines.pop(0), 1, "broken_link"),  # first record deleted
        (lambda lines: lines.insert(1, lines.pop(2)), 2, "broken_link"),  # reordered
        (_insert_forged, 4, "broken_link"),  # inserted with a valid hash and link: the record after it breaks
        (lambda lines: lines.insert(2, "not json\n"), 3, "unparseable"),
    ],
    ids=["edited", "edited-rehashed", "deleted", "deleted-first", "reordered", "inserted", "garbage"],
)
def test_tampering_is_detected_at_the_right_record(tmp_path: Path, edit, line: int, kind: str) -> None:  # type: ignore[no-untyped-def]
    path = tmp_path / "audit.jsonl"
    _write(path, 5)
    _tamper(path, edit)
    report = verify_audit_log(path)
    assert not report.intact
    assert (report.problems[0].line, report.problems[0].kind) == (line, kind)


def test_torn_tail_is_a_warning_and_the_next_writer_recovers(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    records = _write(path, 3)
    fragment = b'{"seq":3,"ts":"2025-'
    with path.open("ab") as handle:
        handle.write(fragment)
    report = verify_audit_log(path)
    assert (report.intact, report.records, report.torn_tail_bytes) == (True, 3, len(fragment))
    recovered = _write(path, 1)
    assert verify_audit_log(path).intact
    kinds = [json.loads(line)["kind"] for line in _lines(path)]
    assert kinds == ["event", "event", "event", "torn_tail_recovered", "event"]
    note = json.loads(_lines(path)[3])
    assert note["prev_hash"] == records[-1]["hash"]
    offset = sum(len(line.encode()) for line in _lines(path)[:3])
    digest = hashlib.sha256(fragment).hexdigest()
    assert note["fragment"] == {"offset": offset, "bytes": len(fragment), "sha256": digest}
    assert recovered[0]["seq"] == 4


def test_unreadable_logs_raise(tmp_path: Path) -> None:
    with pytest.raises(AuditLogUnreadable):
        verify_audit_log(tmp_path / "missing.jsonl")
    with pytest.raises(AuditLogUnreadable):
        verify_audit_log(tmp_path)


def test_empty_log_is_intact(tmp_path: Path) -> None:
    (tmp_path / "a.jsonl").write_text("")
    assert verify_audit_log(tmp_path / "a.jsonl").records == 0


def test_threads_share_one_chain(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    log = AuditLog(path)

    def work(worker: int) -> None:
        for n in range(25):
            log.append("event", worker=worker, n=n)

    threads = [threading.Thread(target=work, args=(w,)) for w in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    log.close()
    report = verify_audit_log(path)
    assert (report.intact, report.records) == (True, 100)


def _process_writer(path: str, worker: int) -> None:
    with AuditLog(Path(path)) as log:
        for n in range(20):
            log.append("event", worker=worker, n=n)


def test_processes_share_one_chain(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    context = multiprocessing.get_context("fork")
    workers = [context.Process(target=_process_writer, args=(str(path), w)) for w in range(3)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=60)
        assert worker.exitcode == 0
    report = verify_audit_log(path)
    assert (report.intact, report.records) == (True, 60)


KILLED_WRITER = """
import sys
from pathlib import Path
from guards.audit.log import AuditLog
log = AuditLog(Path(sys.argv[1]), texts="full").open()
n = 0
while True:
    log.append("event", n=n, text="x" * 5000)
    n += 1
    if n == 20:
        print("ready", flush=True)
"""


def test_kill_minus_nine_keeps_everything_written_verifiable(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    repo = Path(__file__).resolve().parents[2]
    process = subprocess.Popen(
        [sys.executable, "-c", KILLED_WRITER, str(path)], cwd=repo, stdout=subprocess.PIPE, text=True
    )
    assert process.stdout is not None and process.stdout.readline().strip() == "ready"
    os.kill(process.pid, signal.SIGKILL)
    process.wait(timeout=30)
    report = verify_audit_log(path)
    assert report.intact and report.records >= 20
    _write(path, 1)  # a new writer continues the chain after whatever the kill left
    assert verify_audit_log(path).intact


async def test_pipeline_record_writes_other_kinds_into_the_verdict_chain(tmp_path: Path) -> None:
    from guards.policy import parse_policy_text
    from guards.runtime.pipeline import GuardPipeline

    policy_file = tmp_path / "policy.yaml"
    policy_file.write_text("version: 1\naudit: {path: audit.jsonl, texts: hash}\n")
    policy = parse_policy_text(policy_file.read_text())
    pipe = GuardPipeline.from_policy(policy, runners={}, audit=True, policy_path=policy_file)
    pipe.record("run_start", thread_id="t1", policy_hash="ab" * 32)
    pipe.record("tool_run", thread_id="t1", text="print(1)", tool="code_interpreter", ok=True, limits_hit=[])
    records = [json.loads(line) for line in (tmp_path / "audit.jsonl").read_text().splitlines()]
    assert [r["kind"] for r in records] == ["run_start", "tool_run"]
    assert records[0]["policy_hash"] == "ab" * 32 and records[1]["thread_id"] == "t1"
    assert records[1]["text"] == {"storage": "hash", "chars": 8,
                                  "sha256": hashlib.sha256(b"print(1)").hexdigest()}
    assert verify_audit_log(tmp_path / "audit.jsonl").intact
    with pytest.raises(ValueError, match="reserved"):
        pipe.record("error", seq=3)
    # Audit off: a no-op, nothing written anywhere.
    GuardPipeline(policy, {}, audit=None).record("refusal", thread_id="t1", reason="x")
    GuardPipeline(policy, {}, audit=lambda v, item: None).record("refusal", reason="x")
    assert len((tmp_path / "audit.jsonl").read_text().splitlines()) == 2


# ------------------------------------------------------------------------------------ truncation: the head file


def test_every_record_replaces_the_head_file(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    records = _write(path, 3)
    head = json.loads((tmp_path / "audit.jsonl.head").read_text())
    assert head == {"log": "audit.jsonl", "seq": 2, "hash": records[-1]["hash"]}
    report = verify_audit_log(path)
    assert report.intact and report.head is not None and report.head.status == "match"
    assert not list(tmp_path.glob(".*.tmp"))  # the temporary head is renamed, never left behind


@pytest.mark.parametrize("keep", [0, 2, 4])
def test_deleting_the_last_records_is_tampering(tmp_path: Path, keep: int) -> None:
    path = tmp_path / "audit.jsonl"
    _write(path, 5)
    path.write_text("".join(_lines(path)[:keep]))
    report = verify_audit_log(path)
    assert not report.intact
    (problem,) = report.problems
    missing = "record 4 is missing" if keep == 4 else f"records {keep}..4 are missing"
    assert problem.kind == "truncated" and missing in problem.message
    assert report.head is not None and report.head.missing == (keep, 4)
    # A writer does not extend a truncated log: a new head would hide the loss.
    with pytest.raises(AuditLogTampered, match="head says seq 4"):
        _write(path, 1)
    assert verify_audit_log(path, head=False).intact  # the chain alone cannot see it


def test_rewritten_log_disagrees_with_its_head(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    _write(path, 3)
    head = (tmp_path / "audit.jsonl.head").read_bytes()
    path.unlink()
    (tmp_path / "audit.jsonl.head").unlink()
    _write(path, 3)  # a fresh chain of the same length
    (tmp_path / "audit.jsonl.head").write_bytes(head)  # checked against the head kept from before
    problems = verify_audit_log(path).problems
    assert [p.kind for p in problems] == ["head_mismatch"]


def test_a_missing_head_is_a_warning_and_a_head_kept_elsewhere_can_be_used(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    _write(path, 3)
    kept = tmp_path / "kept.head"
    kept.write_bytes((tmp_path / "audit.jsonl.head").read_bytes())
    (tmp_path / "audit.jsonl.head").unlink()
    report = verify_audit_log(path)
    assert report.intact and report.head is not None and report.head.status == "missing"
    path.write_text("".join(_lines(path)[:2]))
    assert [p.kind for p in verify_audit_log(path, head=kept).problems] == ["truncated"]


def test_a_log_past_its_head_is_fine(tmp_path: Path) -> None:
    # A crash between the record's fsync and the head's replacement leaves the head one record behind.
    path = tmp_path / "audit.jsonl"
    _write(path, 2)
    head = (tmp_path / "audit.jsonl.head").read_bytes()
    _write(path, 1)
    (tmp_path / "audit.jsonl.head").write_bytes(head)
    report = verify_audit_log(path)
    assert report.intact and report.head is not None and report.head.status == "behind"
    _write(path, 1)
    assert verify_audit_log(path).head.status == "match"  # type: ignore[union-attr]


def test_head_sink_receives_every_head(tmp_path: Path) -> None:
    seen: list[tuple[str, int, str]] = []
    with AuditLog(tmp_path / "a.jsonl", head_sink=lambda p, h: seen.append((p.name, h.seq, h.hash))) as log:
        records = [log.append("event", n=n) for n in range(2)]
    assert seen == [("a.jsonl", 0, records[0]["hash"]), ("a.jsonl", 1, records[1]["hash"])]


# ------------------------------------------------------------------------------ strict parsing: one line, one meaning


def _rewrite_line(path: Path, index: int, new: str) -> None:
    lines = _lines(path)
    lines[index] = new
    path.write_text("".join(lines))


def test_duplicate_keys_make_a_record_invalid(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    with AuditLog(path) as log:
        log.append("verdict", verdict={"decision": "block"})
        log.append("event", n=1)
    line = _lines(path)[0]
    # The hash covers the record a lenient parser keeps (the last "verdict"); a second, earlier key says "allow".
    forged = line.replace('"verdict":{', '"verdict":{"decision":"allow"},"verdict":{', 1)
    assert json.loads(forged) == json.loads(line)  # a plain json.loads cannot tell them apart
    _rewrite_line(path, 0, forged)
    (problem,) = verify_audit_log(path).problems
    assert (problem.line, problem.seq, problem.kind) == (1, 0, "duplicate_key")
    assert "'verdict' appears twice" in problem.message


@pytest.mark.parametrize(
    "respell",
    [
        lambda line: line.replace('","', '", "', 1),  # extra whitespace
        lambda line: line.rstrip("\n") + " \n",  # trailing space
        lambda line: line.replace('"kind"', '"\\u006bind"', 1),  # an escape for a plain letter
        lambda line: json.dumps(dict(reversed(json.loads(line).items())), separators=(",", ":")) + "\n",  # order
    ],
    ids=["space", "trailing-space", "escape", "key-order"],
)
def test_non_canonical_spellings_make_a_record_invalid(tmp_path: Path, respell) -> None:  # type: ignore[no-untyped-def]
    path = tmp_path / "audit.jsonl"
    with AuditLog(path) as log:
        log.append("event", a=1, z="text")
        log.append("event", n=1)
    line = _lines(path)[0]
    respelled = respell(line)
    assert json.loads(respelled) == json.loads(line)  # same data, different bytes
    _rewrite_line(path, 0, respelled)
    kinds = [p.kind for p in verify_audit_log(path).problems]
    assert kinds == ["non_canonical"]


def test_nan_is_not_a_record(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    _write(path, 2)
    _rewrite_line(path, 1, _lines(path)[1].replace('"n":1', '"n":NaN'))
    assert verify_audit_log(path).problems[0].kind == "unparseable"


# ----------------------------------------------------------------------------------------- counts per kind


def test_report_counts_records_per_kind(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    with AuditLog(path) as log:
        log.append("run_start", policy_hash="0" * 64)
        log.append("verdict", stage="user_input")
        log.append("verdict", stage="model_output")
        log.append("tool_run", tool="code_interpreter", ok=True)
    report = verify_audit_log(path)
    assert report.kinds == {"run_start": 1, "tool_run": 1, "verdict": 2}
    assert report.to_dict()["kinds"] == report.kinds


def test_policy_can_send_every_head_to_syslog(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import syslog

    from guards.policy import parse_policy_text
    from guards.runtime.pipeline import GuardPipeline

    sent: list[tuple[int, str]] = []
    monkeypatch.setattr(syslog, "syslog", lambda priority, message: sent.append((priority, message)))
    policy_file = tmp_path / "policy.yaml"
    policy_file.write_text("version: 1\naudit: {path: audit.jsonl, head_syslog: true}\n")
    pipe = GuardPipeline.from_policy(parse_policy_text(policy_file.read_text()), runners={}, audit=True,
                                     policy_path=policy_file)
    pipe.record("run_start", policy_hash="0" * 64)
    (record,) = [json.loads(line) for line in (tmp_path / "audit.jsonl").read_text().splitlines()]
    assert sent == [(syslog.LOG_INFO, f"audit head log={tmp_path / 'audit.jsonl'} seq=0 hash={record['hash']}")]


def test_a_head_that_cannot_be_written_stops_the_next_record(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import guards.audit.log as audit_module

    def full_disk(*args: object, **kwargs: object) -> None:
        raise OSError(28, "No space left on device")

    path = tmp_path / "audit.jsonl"
    log = AuditLog(path)
    monkeypatch.setattr(audit_module, "write_head", full_disk)
    log.append("event", n=0)  # the head is replaced off the caller's path...
    with pytest.raises(OSError, match="cannot replace the audit head file"):
        log.flush()  # ...and its failure is not lost
    log.append("event", n=1)
    for _ in range(1000):  # until the writer thread has met the failure
        if log._heads._failure is not None:
            break
        time.sleep(0.01)
    with pytest.raises(OSError, match="No space left"):
        log.append("event", n=2)  # a failure seen by the writer thread is raised into the next record
    monkeypatch.undo()
    log.append("event", n=3)
    log.close()
    assert verify_audit_log(path).head.status == "match"  # type: ignore[union-attr]


def test_temporary_heads_of_dead_writers_are_removed(tmp_path: Path) -> None:
    finished = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    stale = tmp_path / f".audit.jsonl.head.{finished.stdout.strip()}-7f00.tmp"
    stale.write_text("{")
    _write(tmp_path / "audit.jsonl", 1)
    assert not stale.exists() and (tmp_path / "audit.jsonl.head").exists()

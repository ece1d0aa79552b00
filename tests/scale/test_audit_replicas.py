"""The audit log in a multi-replica deployment: one hash chain per replica (`ASSISTANT_REPLICA_ID` in the file name
and in every record), verified together by `assistant audit verify FILE...`."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from assistant.cli.main import cli
from guards.audit.log import REPLICA_ENV, AuditLog, replica_log_path


def write(folder: Path, replica: str | None, records: int) -> Path:
    log = AuditLog(folder / "audit.jsonl", replica=replica)
    with log:
        for i in range(records):
            log.append("tool_run", thread_id=f"t{i}", name="send_email")
    return log.path


def test_each_replica_writes_its_own_chain(tmp_path: Path) -> None:
    a, b = write(tmp_path, "a", 3), write(tmp_path, "b", 2)
    assert (a.name, b.name) == ("audit.a.jsonl", "audit.b.jsonl")
    for path, replica, count in ((a, "a", 3), (b, "b", 2)):
        records = [json.loads(line) for line in path.read_text().splitlines()]
        assert [r["seq"] for r in records] == list(range(count))  # each chain starts at 0
        assert {r["replica"] for r in records} == {replica}
    assert not (tmp_path / "audit.jsonl").exists()
    assert replica_log_path(Path("/x/audit"), "r-1") == Path("/x/audit.r-1")


def test_replica_from_the_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(REPLICA_ENV, "pod-7")
    assert AuditLog(tmp_path / "audit.jsonl").path.name == "audit.pod-7.jsonl"
    monkeypatch.delenv(REPLICA_ENV)
    assert AuditLog(tmp_path / "audit.jsonl").path.name == "audit.jsonl"  # one process: unchanged
    with pytest.raises(ValueError, match="replica id"):
        AuditLog(tmp_path / "audit.jsonl", replica="../escape")


def test_verify_several_chains(tmp_path: Path) -> None:
    a, b = write(tmp_path, "a", 3), write(tmp_path, "b", 2)
    ok = CliRunner().invoke(cli, ["audit", "verify", str(a), str(b)])
    assert ok.exit_code == 0, ok.output
    assert "audit.a.jsonl: intact, 3 records" in ok.output and "audit.b.jsonl: intact, 2 records" in ok.output
    assert "replica a" in ok.output and "replica b" in ok.output
    lines = b.read_text().splitlines()
    lines[1] = lines[1].replace('"thread_id":"t1"', '"thread_id":"tX"')
    b.write_text("\n".join(lines) + "\n")
    bad = CliRunner().invoke(cli, ["audit", "verify", str(a), str(b)])
    assert bad.exit_code == 1 and "audit.b.jsonl: TAMPERED" in bad.output


def test_verify_warns_when_two_files_claim_one_replica(tmp_path: Path) -> None:
    a = write(tmp_path, "a", 2)
    copy = tmp_path / "copy.jsonl"
    copy.write_bytes(a.read_bytes())
    result = CliRunner().invoke(cli, ["audit", "verify", "--no-head", str(a), str(copy)])
    assert result.exit_code == 0 and "replica a" in result.output and "more than one file" in result.output

"""`assistant audit verify FILE`: exit 0 intact, 1 tampered (naming the record), 2 unreadable."""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner

from assistant.cli.main import cli
from guards.audit import AuditLog


def _log(path: Path, count: int = 3) -> None:
    with AuditLog(path) as log:
        for n in range(count):
            log.append("event", n=n)


def _verify(*args: str):  # type: ignore[no-untyped-def]
    return CliRunner().invoke(cli, ["audit", "verify", *args])


def test_intact_log_exits_0(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    _log(path)
    result = _verify(str(path))
    assert result.exit_code == 0, result.output
    assert "intact, 3 records" in result.output


def test_tampered_log_exits_1_and_names_the_record(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    _log(path)
    lines = path.read_text().splitlines(keepends=True)
    record = json.loads(lines[1])
    record["n"] = 42
    lines[1] = json.dumps(record) + "\n"
    path.write_text("".join(lines))
    result = _verify(str(path))
    assert result.exit_code == 1
    assert "TAMPERED at line 2: record seq 1 (line 2) was edited" in result.output
    report = json.loads(_verify("--json", str(path)).stdout)
    assert (report["intact"], report["problems"][0]["seq"], report["problems"][0]["kind"]) == (
        False,
        1,
        "hash_mismatch",
    )


def test_torn_tail_exits_0_with_a_warning(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    _log(path)
    with path.open("a") as handle:
        handle.write('{"seq": 3, "ts"')
    result = _verify(str(path))
    assert result.exit_code == 0
    assert "incomplete line of 15 bytes" in result.output


def test_unreadable_log_exits_2(tmp_path: Path) -> None:
    result = _verify(str(tmp_path / "missing.jsonl"))
    assert result.exit_code == 2
    assert "cannot read audit log" in result.output
    assert _verify(str(tmp_path)).exit_code == 2

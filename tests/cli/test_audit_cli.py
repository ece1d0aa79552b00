"""`assistant audit verify FILE`: exit 0 intact, 1 tampered (naming the record), 2 unreadable."""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner

from assistant.cli.main import cli
from guards.audit.log import AuditLog


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


def _mixed_log(path: Path) -> None:
    from guards.verdict import Verdict

    with AuditLog(path, texts="full") as log:
        log.append("run_start", thread_id="t1", policy_hash="ab" * 32)
        log.append_verdict(Verdict("user_input", "llama_guard", "allow", score=0.01), thread_id="t1", text="hi")
        log.append("tool_run", thread_id="t1", tool="code_interpreter", ok=True, limits_hit=[], text="print(1)")
        log.append("approval_decision", thread_id="t2", tool="shell", decision="deny", interface="tui")
        log.append("refusal", thread_id="t2", stage="user_input", reason="blocked by llama_guard")


def test_verify_prints_counts_per_kind_and_the_head(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    _mixed_log(path)
    result = _verify(str(path))
    assert result.exit_code == 0, result.output
    assert "records per kind: approval_decision 1, refusal 1, run_start 1, tool_run 1, verdict 1" in result.output
    assert "head: matches (audit.jsonl.head, seq 4)" in result.output
    report = json.loads(_verify("--json", str(path)).stdout)
    assert report["kinds"]["verdict"] == 1 and report["head"]["status"] == "match"


def test_truncated_log_exits_1_naming_the_missing_records(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    _log(path, 5)
    path.write_text("".join(path.read_text().splitlines(keepends=True)[:3]))
    result = _verify(str(path))
    assert result.exit_code == 1
    assert "records 3..4 are missing" in result.output
    assert _verify("--no-head", str(path)).exit_code == 0
    (tmp_path / "audit.jsonl.head").rename(tmp_path / "elsewhere.head")
    result = _verify(str(path))
    assert result.exit_code == 0 and "warning: no head file" in result.output
    assert _verify("--head", str(tmp_path / "elsewhere.head"), str(path)).exit_code == 1


def test_show_prints_a_table_filtered_by_thread_and_kind(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    _mixed_log(path)
    result = CliRunner().invoke(cli, ["audit", "show", str(path)])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0].split() == ["SEQ", "TIME", "KIND", "THREAD", "SUMMARY"]
    assert len(lines) == 6
    assert "user_input llama_guard: allow; score 0.01; text \"hi\"" in lines[2]
    assert "tool=code_interpreter ok=true limits_hit=[]; text \"print(1)\"" in lines[3]
    only_t2 = CliRunner().invoke(cli, ["audit", "show", str(path), "--thread", "t2"]).output.splitlines()
    assert [line.split()[3] for line in only_t2[1:]] == ["approval_decision", "refusal"]
    tools = CliRunner().invoke(cli, ["audit", "show", str(path), "--kind", "tool_run"]).output.splitlines()
    assert len(tools) == 2 and "tool_run" in tools[1]
    missing = CliRunner().invoke(cli, ["audit", "show", str(tmp_path / "nope.jsonl")])
    assert missing.exit_code == 2 and "cannot read audit log" in missing.output


def test_several_logs_at_once_exit_with_the_worst_outcome(tmp_path: Path) -> None:
    good, bad = tmp_path / "audit.a.jsonl", tmp_path / "audit.b.jsonl"
    _log(good)
    _log(bad, 4)
    bad.write_text("".join(bad.read_text().splitlines(keepends=True)[:2]))
    both = _verify(str(good), str(bad))
    assert both.exit_code == 1 and f"{good}: intact" in both.output and "records 2..3 are missing" in both.output
    assert _verify(str(good), str(tmp_path / "audit.c.jsonl")).exit_code == 2
    assert _verify(str(good), str(good)).exit_code == 0
    assert _verify("--head", str(tmp_path / "x.head"), str(good), str(bad)).exit_code == 2

"""Durability: kill -9 a real process while an answer streams and while a tool runs; the conversation store (SQLite
WAL) and the audit log reopen intact, `assistant audit verify` passes, the thread goes on, and a tampered audit log
is detected (one edited byte anywhere in a committed record)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from hypothesis import strategies as st

from assistant.cli.main import cli
from guards.audit.log import verify_audit_log
from tests.reliability.drivers.common import make_assistant, write_script
from tests.reliability.helpers import REPO, TINY_DIR, fuzz

THREAD = "t-durable"


def spawn(workdir: Path, mode: str, text: str) -> subprocess.Popen[str]:
    env = {**os.environ, "ASSISTANT_HOME": str(workdir / "home"), "PYTHONPATH": str(REPO)}
    return subprocess.Popen(
        [sys.executable, "-m", "tests.reliability.drivers.agent_driver", str(workdir), str(TINY_DIR), mode, THREAD,
         text],
        cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
    )


def kill_when(process: subprocess.Popen[str], marker: Path, timeout: float = 180) -> None:
    deadline = time.monotonic() + timeout
    while not marker.exists():
        assert process.poll() is None, f"the driver ended before {marker.name} (exit {process.returncode})"
        assert time.monotonic() < deadline, f"{marker.name} never appeared"
        time.sleep(0.05)
    os.kill(process.pid, signal.SIGKILL)
    process.wait(timeout=30)
    assert process.returncode == -signal.SIGKILL


def tool_runs(workdir: Path) -> list[str]:
    path = workdir / "tool-runs.txt"
    return path.read_text(encoding="utf-8").split() if path.exists() else []


@pytest.fixture(scope="module")
def crashed(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """One thread: a normal turn, then a process killed mid-stream, then one killed mid-tool."""
    workdir = tmp_path_factory.mktemp("durable")
    script = write_script(workdir, ["First answer.<|eot_id|>"], name="first.jsonl")
    first = make_assistant(workdir, TINY_DIR, [], script)
    assert first.run("hello, first turn", thread=THREAD).text == "First answer."
    streamed = spawn(workdir, "stream", "second turn, killed while the answer streams")
    kill_when(streamed, workdir / "marker-stream")
    tooled = spawn(workdir, "tool", "third turn, killed while the tool runs")
    kill_when(tooled, workdir / "marker-tool")
    return {"workdir": workdir, "db": workdir / "threads.sqlite", "audit": workdir / "audit.jsonl"}


def test_sqlite_store_reopens_intact(crashed: dict[str, Any]) -> None:
    connection = sqlite3.connect(crashed["db"])
    try:
        assert connection.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        assert connection.execute("PRAGMA journal_mode").fetchone()[0].lower() == "wal"
    finally:
        connection.close()


async def test_nothing_committed_is_lost_and_the_thread_goes_on(crashed: dict[str, Any]) -> None:
    from tools.custom import tool

    workdir = crashed["workdir"]

    @tool
    def fetch_page(name: str) -> str:
        """Fetch a web page.

        Args:
            name: which page
        """
        return f"page {name}"

    bot = make_assistant(workdir, TINY_DIR, [fetch_page],
                         write_script(workdir, ["Fourth answer.<|eot_id|>"], name="fourth.jsonl"))
    history = await bot.history(THREAD)
    contents = [m["content"] for m in history]
    assert contents[:2] == ["hello, first turn", "First answer."]
    assert "The answer streams slowly" not in json.dumps(history)  # the killed answer was never released or stored
    result = await bot.arun("fourth turn, after the crashes", thread=THREAD)
    assert result.text == "Fourth answer."
    history = await bot.history(THREAD)
    assert [m["content"] for m in history][:2] == ["hello, first turn", "First answer."]
    assert history[-1]["content"] == "Fourth answer."
    assert tool_runs(workdir) == ["slow"]  # the killed call was not run again


def test_audit_log_reopens_and_verifies(crashed: dict[str, Any]) -> None:
    report = verify_audit_log(crashed["audit"])
    assert report.intact and report.records >= 6, report.problems
    result = CliRunner().invoke(cli, ["audit", "verify", str(crashed["audit"])])
    assert result.exit_code == 0, result.output
    stages = [json.loads(line).get("stage") for line in crashed["audit"].read_text(encoding="utf-8").splitlines()]
    assert stages.count("user_input") >= 6  # 2 guards x 3 turns, the killed ones included


def test_tampered_audit_log_is_detected_by_the_command(crashed: dict[str, Any], tmp_path: Path) -> None:
    lines = crashed["audit"].read_text(encoding="utf-8").splitlines(keepends=True)
    edited = tmp_path / "edited.jsonl"
    record = json.loads(lines[2])
    record["verdict"]["decision"] = "allow" if record["verdict"]["decision"] == "block" else "block"
    edited.write_text("".join([*lines[:2], json.dumps(record, separators=(",", ":")) + "\n", *lines[3:]]))
    deleted = tmp_path / "deleted.jsonl"
    deleted.write_text("".join([*lines[:1], *lines[2:]]))
    for path, line in ((edited, 3), (deleted, 2)):
        result = CliRunner().invoke(cli, ["audit", "verify", str(path)])
        assert result.exit_code == 1 and f"line {line}" in result.output, result.output


def check_any_edited_byte_is_detected(crashed: dict[str, Any], data: st.DataObject) -> None:
    """One byte changed anywhere before the last record's newline: `audit verify` must report tampering (exit 1).
    (Cutting off whole last records is what an outside anchor of the last hash is for; the log says so.)"""
    raw = crashed["audit"].read_bytes()
    position = data.draw(st.integers(0, len(raw) - 2))
    value = data.draw(st.integers(0, 255).filter(lambda b: b != raw[position]))
    changed = raw[:position] + bytes([value]) + raw[position + 1 :]
    path = crashed["workdir"] / "fuzzed-audit.jsonl"
    path.write_bytes(changed)
    report = verify_audit_log(path)
    assert not report.intact, f"byte {position} changed to {value} went unnoticed"


test_any_edited_byte_is_detected, test_any_edited_byte_is_detected_long = fuzz(100, st.data())(
    check_any_edited_byte_is_detected
)


def test_killed_writer_leaves_no_stray_files(crashed: dict[str, Any]) -> None:
    """SQLite's WAL and shared-memory files are its own and are fine; nothing else half-written is left."""
    names = {p.name for p in crashed["workdir"].iterdir()}
    assert not any(name.endswith((".tmp", ".partial")) for name in names)
    shutil.rmtree(crashed["workdir"] / "home", ignore_errors=True)


@pytest.mark.parametrize("texts", ["full", "hash", "redact"])
def test_lone_surrogates_are_audited_not_crashing(tmp_path: Path, texts: str) -> None:
    """Found here: a lone surrogate (argv with invalid UTF-8, a JSON `\\udcff` escape in a tool result) made every
    audit write raise UnicodeEncodeError, so the turn died as an internal error with nothing audited. The log now
    writes it as its JSON escape, which reads back as the same string and verifies."""
    from guards.audit.log import AuditLog
    from guards.verdict import Verdict

    path = tmp_path / "audit.jsonl"
    with AuditLog(path, texts=texts) as log:  # type: ignore[arg-type]
        log.append_verdict(Verdict("user_input", "prompt_guard", "block", error="x \udcff"), text="hi \udcff \ud800")
        log.append_verdict(Verdict("user_input", "llama_guard", "allow"), text="after")
    report = verify_audit_log(path)
    assert report.intact and report.records == 2
    first = json.loads(path.read_text(encoding="utf-8").splitlines()[0])
    assert first["verdict"]["error"] == "x \udcff"
    if texts == "full":
        assert first["text"]["text"] == "hi \udcff \ud800"


async def test_lone_surrogate_in_a_turn_fails_closed_and_is_audited(tmp_path: Path) -> None:
    bot = make_assistant(tmp_path, TINY_DIR, [], write_script(tmp_path, ["Fine.<|eot_id|>"]))
    result = await bot.arun("hello \udcff there", thread="t")
    assert result.events[-1].type in ("final", "refusal")  # never an internal error
    assert verify_audit_log(tmp_path / "audit.jsonl").intact

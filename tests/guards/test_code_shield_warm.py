"""The warm semgrep server (guards/semgrep_server): same findings as a semgrep process per scan, proven scans,
and a failed server replaced by the verified one-process scan. (The labelled Code Shield cases in
test_code_shield_labels go through it for Python too.)"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import guards.code_shield.adapter as adapter
from guards.code_shield import semgrep_server
from guards.code_shield.adapter import load_codeshield, semgrep_config
from guards.code_shield.project_rules import rules_file
from guards.code_shield.semgrep_runner import SemgrepError

CASES = [json.loads(line) for line in (Path(__file__).parent / "fixtures" / "python_rules_cases.jsonl").open()]
ICD = json.loads((Path(__file__).parents[1] / "data" / "codeshield" / "icd_unit_test_cases.json").read_text())


def _summary(found: list[list[object]]) -> list[list[tuple[object, ...]]]:
    return [sorted((i.pattern_id, i.line, str(i.severity), i.cwe_id) for i in issues) for issues in found]  # type: ignore[attr-defined]


@pytest.mark.parametrize("usecase", ["codeshield", "cyberseceval"])
async def test_warm_and_cold_scans_agree(usecase: str, monkeypatch: pytest.MonkeyPatch) -> None:
    codes = [c["text"] for c in CASES] + [c["code"] for c in ICD if c["language"] == "python"]
    monkeypatch.setenv(adapter.WARM_ENV, "1")
    warm = await adapter.analyze_many("python", codes, usecase=usecase, project_rules=True)
    monkeypatch.setenv(adapter.WARM_ENV, "0")
    cold = await adapter.analyze_many("python", codes, usecase=usecase, project_rules=True)
    assert _summary(warm) == _summary(cold)
    assert sum(map(len, warm)) > 40


def _server() -> semgrep_server.SemgrepServer:
    cs = load_codeshield()
    config = semgrep_config(cs, cs.Language("python"), cs.UseCase("codeshield"))
    return semgrep_server.server_for(str(cs.oss.SEMGREP_COMMAND[0]), [config, rules_file("python")], "python")  # type: ignore[list-item]


def test_a_scan_without_the_marker_is_not_believed() -> None:
    server = _server()
    assert [r["check_id"] for r in server.scan(["import ctypes\n"], ".py", 30)[0]] == ["ga-ctypes"]
    with pytest.raises(SemgrepError, match="did not prove it scanned"):
        server.scan(["import ctypes\n"], ".txt", 30)  # not a Python target: nothing scanned, nothing proven


async def test_a_dead_server_is_replaced(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(adapter.WARM_ENV, "1")
    code = "import ctypes\n"
    before = await adapter.analyze_many("python", [code], project_rules=True)
    server = _server()
    assert server._process is not None
    server._process.kill()
    server._process.wait()
    after = await adapter.analyze_many("python", [code], project_rules=True)  # falls back, a new server next
    assert _summary(after) == _summary(before) == [[("ga-ctypes", 1, "ERROR", "CWE-676")]]
    again = _server()
    assert again is not server and again.alive

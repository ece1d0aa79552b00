"""The semgrep runner: the `--project-root /` failure reproduced, and what counts as a trustworthy report."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from guards.code_shield.adapter import load_codeshield, semgrep_config
from guards.code_shield.semgrep_runner import SemgrepError, check_semgrep_output, parse_semgrep_output, run_semgrep

PICKLE = "import pickle\nobj = pickle.loads(payload)\n"


def _python_config() -> tuple[list[str], Path]:
    cs = load_codeshield()
    return list(cs.oss.SEMGREP_COMMAND), semgrep_config(cs, cs.Language.PYTHON, cs.UseCase.CODESHIELD)


async def test_one_run_scans_many_files(tmp_path: Path) -> None:
    command, config = _python_config()
    targets = [tmp_path / f"s{i}.py" for i in range(3)]
    for target, code in zip(targets, [PICKLE, "print(1)\n", "eval(x)\n"], strict=True):
        target.write_text(code)
    run = await run_semgrep(command, config, tmp_path, targets, timeout_s=30)
    assert [[r["check_id"] for r in run.results[str(t)]] for t in targets] == [
        ["unsafe-pickle-use"], [], ["insecure-eval-use"]
    ]
    assert run.semgrep_version != "?"


async def test_project_root_slash_scans_nothing_and_is_an_error(tmp_path: Path) -> None:
    """Exactly what codeshield 1.0.1 passes: semgrep drops the target silently; the runner refuses the report."""
    command, config = _python_config()
    target = tmp_path / "a.py"
    target.write_text(PICKLE)
    with pytest.raises(SemgrepError, match="did not scan 1 of 1"):
        await run_semgrep(command, config, Path("/"), [target], timeout_s=30)


async def test_java_config_runs_despite_its_one_unparseable_rule(tmp_path: Path) -> None:
    cs = load_codeshield()
    config = semgrep_config(cs, cs.Language.JAVA, cs.UseCase.CODESHIELD)
    target = tmp_path / "A.java"
    target.write_text("class A { void f() { SAXParserFactory f = SAXParserFactory.newInstance(); } }\n")
    with pytest.raises(SemgrepError, match="Rule parse error"):
        await run_semgrep(cs.oss.SEMGREP_COMMAND, config, tmp_path, [target], timeout_s=30)
    run = await run_semgrep(
        cs.oss.SEMGREP_COMMAND,
        config,
        tmp_path,
        [target],
        timeout_s=30,
        tolerated_rule_errors={"ssrf_insecure_patterns"},
    )
    assert run.skipped_rules == ("ssrf_insecure_patterns",)


def _report(**extra: object) -> dict[str, object]:
    return {"results": [], "errors": [], "paths": {"scanned": ["a.py"]}, **extra}


def test_parse_refuses_non_json_and_bad_exit_codes() -> None:
    with pytest.raises(SemgrepError, match="without a JSON report: boom"):
        parse_semgrep_output(b"", b"boom", -11)
    with pytest.raises(SemgrepError, match="status 7"):
        parse_semgrep_output(json.dumps(_report()).encode(), b"", 7)
    assert parse_semgrep_output(json.dumps(_report()).encode(), b"", 0)["results"] == []


def test_warn_level_parse_errors_are_normal_but_error_level_ones_fail() -> None:
    partial = {"level": "warn", "type": ["PartialParsing", []], "message": "Syntax error"}
    assert check_semgrep_output(_report(errors=[partial]), [Path("a.py")]) == ()
    fatal = {"level": "error", "type": "Fatal error", "message": "out of memory\nmore"}
    with pytest.raises(SemgrepError, match=r"Fatal error.*out of memory"):
        check_semgrep_output(_report(errors=[fatal]), [Path("a.py")])
    with pytest.raises(SemgrepError, match="did not scan 1 of 2"):
        check_semgrep_output(_report(), [Path("a.py"), Path("b.py")])

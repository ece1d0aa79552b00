"""The Code Shield guard with the real codeshield and semgrep: canary, findings, decisions and every failure path.

Broken semgrep installations are simulated by giving the guard another semgrep command (a script in tmp_path):
missing, crashing, hanging, printing garbage, or "succeeding" with no findings. Each must block, never pass.
"""

from __future__ import annotations

import sys
import textwrap
from dataclasses import dataclass
from pathlib import Path

import pytest

from guards.code_shield.guard import CodeShieldGuard, CodeShieldResult, Finding, decide, to_verdict, treatment_of

PICKLE = "import pickle\nobj = pickle.loads(payload)\n"
SHELL = "import subprocess\nsubprocess.run(user_command, shell=True)\n"
MD5 = "import hashlib\nprint(hashlib.md5(b'x').hexdigest())\n"
SAFE = "def add(a, b):\n    return a + b\n\nprint(add(1, 2))\n"


@pytest.fixture(scope="module")
def guard() -> CodeShieldGuard:
    return CodeShieldGuard()


def _script(tmp_path: Path, name: str, body: str) -> tuple[str, ...]:
    path = tmp_path / name
    path.write_text(f"#!{sys.executable}\n" + textwrap.dedent(body))
    path.chmod(0o755)
    return (str(path), "--json", "--config")


async def test_canary_passes_with_the_installed_codeshield(guard: CodeShieldGuard) -> None:
    assert await guard.start() is None


@pytest.mark.parametrize(
    ("code", "pattern_id", "analyzer", "line"),
    [
        (PICKLE, "unsafe-pickle-use", "semgrep", 2),
        (SHELL, "insecure-subprocess-using-shell", "semgrep", 2),
        ("x = eval(input())\n", "insecure-eval-use", "semgrep", 1),
        ("import os\nos.system('rm -rf ' + path)\n", "insecure-os-system-use", "semgrep", 2),
        ("import yaml\nyaml.load(stream, Loader=yaml.Loader)\n", "unsafe-yaml-use", "semgrep", 2),
        (MD5, "insecure-md5-hash-usage", "regex", 2),
    ],
)
async def test_insecure_python_is_found_by_the_right_layer(
    guard: CodeShieldGuard, code: str, pattern_id: str, analyzer: str, line: int
) -> None:
    result = await guard.scan_code(code, "python")
    assert result.error is None
    assert result.treatment == "warn"  # every Python rule of Code Shield is a warning
    assert [(f.pattern_id, f.analyzer, f.line, f.severity) for f in result.findings] == [
        (pattern_id, analyzer, line, "warning")
    ]


async def test_safe_code_is_ignored(guard: CodeShieldGuard) -> None:
    result = await guard.scan_code(SAFE, "python")
    assert (result.treatment, result.findings, result.error, result.languages) == ("ignore", (), None, ("python",))


async def test_semgrep_error_severity_recommends_block(guard: CodeShieldGuard) -> None:
    """Java semgrep rules of severity ERROR: codeshield compares "ERROR" with "error" and would only warn."""
    code = textwrap.dedent("""\
        class A {
          void f(InputStream in, DefaultHandler handler) throws Exception {
            SAXParserFactory factory = SAXParserFactory.newInstance();
            SAXParser parser = factory.newSAXParser();
            parser.parse(in, handler);
          }
        }
        """)
    result = await guard.scan_code(code, "java")
    assert result.error is None
    assert [(f.pattern_id, f.severity, f.line) for f in result.findings] == [("xxe-insecure-sax-parser", "error", 5)]
    assert result.treatment == "block"


async def test_fenced_output_is_scanned_per_language_with_lines_in_the_answer(guard: CodeShieldGuard) -> None:
    text = f"Here you go:\n\n```python3\n{PICKLE}```\n\nand in C:\n~~~c\nint main() {{ gets(buf); }}\n~~~\n"
    result = await guard.scan_text(text)
    assert result.error is None
    assert result.languages == ("python", "c")
    assert {(f.language, f.pattern_id, f.line) for f in result.findings} == {
        ("python", "unsafe-pickle-use", 5),
        ("c", "bugprone-gets", 10),
    }


async def test_untagged_fence_is_scanned_as_every_allowed_language() -> None:
    guard = CodeShieldGuard(languages=("python", "javascript"))
    result = await guard.scan_text(f"```\n{SHELL}```")
    assert result.languages == ("javascript", "python")  # Code Shield's order
    assert [f.pattern_id for f in result.findings] == ["insecure-subprocess-using-shell"]


async def test_languages_outside_the_policy_are_not_scanned() -> None:
    guard = CodeShieldGuard(languages=("c",))
    result = await guard.scan_code(PICKLE, "py")
    assert (result.treatment, result.languages, result.error) == ("ignore", (), None)


async def test_text_without_fences_has_nothing_to_scan(guard: CodeShieldGuard) -> None:
    result = await guard.scan_text("Use pickle.loads(data) carefully.")
    assert (result.treatment, result.findings, result.error) == ("ignore", (), None)


async def test_code_interpreter_calls_are_python(guard: CodeShieldGuard) -> None:
    result = await guard.scan_tool_call("code_interpreter", {"code": PICKLE})
    assert result is not None and [f.pattern_id for f in result.findings] == ["unsafe-pickle-use"]
    assert await guard.scan_tool_call("brave_search", {"query": "pickle.loads"}) is None
    broken = await guard.scan_tool_call("code_interpreter", {"code": 42})
    assert broken is not None and broken.error is not None


@dataclass(frozen=True)
class _Item:
    stage: str
    text: str
    language: str | None = None


async def test_check_applies_the_policy_actions() -> None:
    strict = CodeShieldGuard(actions={"block": "block", "warn": "block", "ignore": "allow"})
    verdict = await strict.check(_Item("code", PICKLE, "python"))
    assert (verdict.guard, verdict.stage, verdict.decision, verdict.categories) == (
        "code_shield",
        "code",
        "block",
        ("CWE-502",),
    )
    assert "unsafe-pickle-use" in verdict.reasons[0]
    assert (await strict.check(_Item("code", SAFE, "python"))).decision == "allow"


# ------------------------------------------------------------------------------------------------- failure paths

LYING_SEMGREP = """\
import json, sys
args = sys.argv[1:]
targets = args[args.index("--project-root") + 2:]
print(json.dumps({"version": "fake", "results": [], "errors": [], "paths": {"scanned": targets}}))
"""


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ("import sys\nsys.exit(139)\n", "without a JSON report"),
        ("print('Segmentation fault')\n", "without a JSON report"),
        ("import time\ntime.sleep(30)\n", "did not finish within 1 s"),
        (
            "import json\nprint(json.dumps({'results': [], 'errors': [], 'paths': {'scanned': []}}))\n",
            "did not scan",
        ),
        (LYING_SEMGREP, "did not report unsafe-pickle-use"),
    ],
    ids=["crash", "garbage", "hang", "scans-nothing", "no-findings"],
)
async def test_broken_semgrep_blocks_every_scan(tmp_path: Path, body: str, expected: str) -> None:
    guard = CodeShieldGuard(timeout_s=1.0, semgrep_command=_script(tmp_path, "semgrep", body))
    canary_error = await guard.start()
    assert canary_error is not None and expected in canary_error
    for code in (SAFE, MD5):  # even code the regex layer alone could judge
        result = await guard.scan_code(code, "python")
        assert result.error == canary_error
        assert decide(result, {"block": "allow", "warn": "allow", "ignore": "allow"}) == "block"


async def test_missing_semgrep_blocks(tmp_path: Path) -> None:
    guard = CodeShieldGuard(semgrep_command=(str(tmp_path / "no-such-semgrep"), "--config"))
    result = await guard.scan_code(SAFE, "python")
    assert result.error is not None and "cannot start semgrep" in result.error
    assert to_verdict(result, stage="code", actions={"ignore": "allow"}).decision == "block"


async def test_semgrep_failing_after_a_good_canary_blocks_that_scan(tmp_path: Path) -> None:
    guard = CodeShieldGuard(timeout_s=5.0)
    assert await guard.start() is None
    guard.semgrep_command = _script(tmp_path, "semgrep", "import sys\nsys.exit(2)\n")
    result = await guard.scan_code(SHELL, "python")  # the prescan sends this to semgrep
    assert result.error is not None and "semgrep" in result.error
    assert (await guard.scan_code(SAFE, "python")).error is None  # no semgrep needed: the prescan found nothing


async def test_unverified_codeshield_version_is_a_guard_error(monkeypatch: pytest.MonkeyPatch) -> None:
    import guards.code_shield.adapter as adapter

    monkeypatch.setattr(adapter, "_loaded", None)
    monkeypatch.setattr(adapter, "VERIFIED_CODESHIELD_VERSIONS", ("0.0.0",))
    result = await CodeShieldGuard().scan_code(SAFE, "python")
    assert result.error is not None and "verified with 0.0.0" in result.error


def test_the_installed_codeshield_alone_misses_semgrep_findings() -> None:
    """Why the adapter exists: codeshield 1.0.1's own scan calls pickle.loads secure. If this starts failing,
    codeshield or semgrep fixed `--project-root /`; re-check guards/code_shield/adapter.py."""
    import asyncio

    from codeshield.cs import CodeShield
    from codeshield.insecure_code_detector.languages import Language

    result = asyncio.run(CodeShield.scan_code(PICKLE, Language.PYTHON))
    assert (result.is_insecure, result.recommended_treatment.value) == (False, "ignore")


# ------------------------------------------------------------------------------------------------ pure functions


def _finding(severity: str) -> Finding:
    return Finding("regex", "id", "rule", "d", severity, "CWE-1", 1, "c")


def test_treatment_is_codeshields_rule() -> None:
    assert treatment_of([]) == "ignore"
    assert treatment_of([_finding("warning"), _finding("advice")]) == "warn"
    assert treatment_of([_finding("warning"), _finding("error")]) == "block"


@pytest.mark.parametrize(
    ("treatment", "actions", "expected"),
    [
        ("warn", {"block": "block", "warn": "ask", "ignore": "allow"}, "ask"),
        ("ignore", {"block": "block", "warn": "warn", "ignore": "log"}, "log"),
        ("block", {"block": "warn"}, "warn"),
        ("warn", {"block": "block"}, "block"),  # missing mapping fails closed
        ("warn", {"warn": "nonsense"}, "block"),
    ],
)
def test_decide_maps_treatments_to_actions(treatment: str, actions: dict[str, str], expected: str) -> None:
    assert decide(CodeShieldResult(treatment), actions) == expected  # type: ignore[arg-type]


def test_decide_reads_the_policy_model_and_on_error() -> None:
    from guards.policy.guards_config import CodeShieldActions

    assert decide(CodeShieldResult("warn"), CodeShieldActions(warn="block")) == "block"
    failed = CodeShieldResult("ignore", error="semgrep crashed")
    assert decide(failed, CodeShieldActions()) == "block"
    assert decide(failed, CodeShieldActions(), on_error="allow") == "allow"

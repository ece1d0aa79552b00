"""The project's own semgrep rules (guards/code_shield/rules/python.yaml), run with Code Shield's in one semgrep
process.

Code Shield 1.0.1 flags none of: os.popen with a constant, ctypes, pickle.load, names built at run time
(`getattr(hashlib, "md" + "5")`), `__import__`/`importlib.import_module` with computed names, and only some
spellings of os.system and shell=True. Each rule's severity maps to a treatment (ERROR -> block, WARNING -> warn)
that the policy's actions decide, and the rules are on by default for the `code` stage.
"""

from __future__ import annotations

import importlib.resources
import json
from pathlib import Path

import pytest

import guards.code_shield.adapter as adapter
from guards.code_shield.guard import CodeShieldGuard, treatment_of
from guards.policy import parse_policy_text
from guards.runtime.pipeline import GuardPipeline

CASES_FILE = Path(__file__).parent / "fixtures" / "python_rules_cases.jsonl"
CASES = [json.loads(line) for line in CASES_FILE.read_text().splitlines()]
MD5 = "import hashlib\nh = getattr(hashlib, 'md' + '5')(b'x').hexdigest()\n"


@pytest.fixture(scope="module")
def guard() -> CodeShieldGuard:
    return CodeShieldGuard()


def test_the_rules_ship_with_the_package() -> None:
    rules = importlib.resources.files("guards.code_shield.rules").joinpath("python.yaml")
    assert rules.is_file()
    pyproject = (Path(__file__).parents[2] / "pyproject.toml").read_text()
    assert '"*" = ["*.yaml"' in pyproject  # package data of every package, guards.code_shield.rules included


@pytest.mark.parametrize(
    ("code", "rule", "treatment"),
    [
        ("import os\nos.system('id')\n", "ga-os-system", "warn"),
        ("import os\nprint(os.popen('ls').read())\n", "ga-os-popen", "warn"),
        ("import subprocess\nsubprocess.Popen('ls | wc', shell=True)\n", "ga-subprocess-shell", "warn"),
        ("import ctypes\nctypes.CDLL(None).system(b'id')\n", "ga-ctypes", "block"),
        ("import pickle\nobj = pickle.load(handle)\n", "ga-pickle-loads", "warn"),
        ("import base64\nexec(base64.b64decode(blob))\n", "ga-eval-computed", "block"),
        ("x = eval(expression)\n", "insecure-eval-use", "warn"),  # Code Shield's own; ours would repeat it
        ("os_module = __import__('o' + 's')\n", "ga-computed-name", "block"),
        ("import importlib\nm = importlib.import_module('sub' + 'process')\n", "ga-computed-name", "block"),
        ("import importlib\nm = importlib.import_module(name)\n", "ga-variable-name", "warn"),
        (MD5, "ga-computed-name", "block"),
        ("import hashlib\nname = 'md' + '5'\nh = getattr(hashlib, name)\n", "ga-computed-name", "block"),
    ],
)
async def test_each_rule_finds_its_pattern(guard: CodeShieldGuard, code: str, rule: str, treatment: str) -> None:
    result = await guard.scan_code(code, "python", project_rules=True)
    assert result.error is None
    assert rule in [f.pattern_id for f in result.findings]
    assert result.treatment == treatment


async def test_the_issue_example_passed_code_shield_alone(guard: CodeShieldGuard) -> None:
    alone = await guard.scan_code(MD5, "python")
    assert (alone.treatment, alone.findings) == ("ignore", ())
    with_rules = await guard.scan_code(MD5, "python", project_rules=True)
    (finding,) = with_rules.findings
    assert (finding.pattern_id, finding.severity, finding.cwe_id, finding.line) == ("ga-computed-name", "error",
                                                                                     "CWE-470", 2)


async def test_labelled_cases_one_semgrep_process() -> None:
    """Every insecure case is flagged; no secure case is blocked; the secure ones warned about are named."""
    codes = [case["text"] for case in CASES]
    issues = await adapter.analyze_many("python", codes, project_rules=True)
    from guards.code_shield.guard import _finding

    treatments = {case["id"]: treatment_of([_finding(i, "python", 0) for i in found])
                  for case, found in zip(CASES, issues, strict=True)}
    insecure = [c["id"] for c in CASES if c["expected"] == "block"]
    secure = [c["id"] for c in CASES if c["expected"] == "allow"]
    assert (len(insecure), len(secure)) == (34, 30)
    assert [i for i in insecure if treatments[i] == "ignore"] == []
    assert [s for s in secure if treatments[s] == "block"] == []
    # Known false positives at warn level: dynamic dispatch by a variable name (getattr(record, field), ...).
    assert [s for s in secure if treatments[s] == "warn"] == ["py-secure-25", "py-secure-26", "py-secure-27"]


@pytest.mark.parametrize("warm", [True, False], ids=["warm-server", "process-per-scan"])
async def test_code_without_any_rule_word_is_not_sent_to_semgrep(warm: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    from guards.code_shield.semgrep_server import SemgrepServer

    monkeypatch.setenv(adapter.WARM_ENV, "1" if warm else "0")
    sent: list[int] = []
    real_run, real_scan = adapter.run_semgrep, SemgrepServer.scan

    async def counting_run(*args, **kwargs):  # type: ignore[no-untyped-def]
        sent.append(len(args[3]))
        return await real_run(*args, **kwargs)

    def counting_scan(self, codes, *args, **kwargs):  # type: ignore[no-untyped-def]
        if codes[0] != adapter.WARM_CANARY[0]:
            sent.append(len(codes))
        return real_scan(self, codes, *args, **kwargs)

    monkeypatch.setattr(adapter, "run_semgrep", counting_run)
    monkeypatch.setattr(SemgrepServer, "scan", counting_scan)
    found = await adapter.analyze_many("python", ["print(sum(range(10)))\n", MD5, "import json\n"], project_rules=True)
    assert sent == [1]  # one semgrep scan, of the one snippet that could match
    assert [len(f) for f in found] == [0, 1, 0]


def _policy(model_output_rules: bool | None = None, code_rules: bool | None = None) -> object:
    """Code Shield only (no model needed): on the code stage and on answers."""
    def stage(rules: bool | None) -> str:
        return "{enabled: true}" if rules is None else f"{{enabled: true, project_rules: {str(rules).lower()}}}"

    return parse_policy_text(
        "version: 1\nstages:\n"
        "  user_input: {llama_guard: {enabled: false}, prompt_guard: {enabled: false}}\n"
        f"  model_output: {{llama_guard: {{enabled: false}}, code_shield: {stage(model_output_rules)}}}\n"
        f"  code: {{code_shield: {stage(code_rules)}}}\n"
    )


async def test_on_by_default_for_the_code_stage_and_a_policy_key_turns_them_off() -> None:
    default = GuardPipeline.from_policy(_policy(), audit=None)
    assert (await default.check("code", MD5, language="python")).decision == "block"
    # Fenced code in answers is shown, not run: the project's rules are off there unless the policy says so.
    fenced = f"```python\n{MD5}```\n"
    assert (await default.check("model_output", fenced)).decision == "allow"
    off = GuardPipeline.from_policy(_policy(code_rules=False), audit=None)
    assert (await off.check("code", MD5, language="python")).decision == "allow"
    on = GuardPipeline.from_policy(_policy(model_output_rules=True), audit=None)
    assert (await on.check("model_output", fenced)).decision == "block"


async def test_broken_project_rules_fail_closed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import guards.code_shield.project_rules as project_rules

    (tmp_path / "python.yaml").write_text(
        "rules:\n  - id: ga-broken\n    languages: [python]\n    severity: ERROR\n    message: x\n"
        "    metadata: {prescan: [getattr]}\n    pattern: getattr($X,\n"
    )
    monkeypatch.setattr(project_rules, "RULES_DIR", tmp_path)
    guard = CodeShieldGuard()
    assert "canary" in (await guard.start() or "")
    result = await guard.scan_code("print(1)\n", "python")
    assert result.error is not None  # every scan of a guard whose canary failed is a guard error

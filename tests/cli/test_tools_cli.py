"""`assistant tools list|run`: the JSON contract and the exit codes (0 ran, 3 refused, 2 bad input)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tools.sandbox.isolation import SYSTEM_PYTHON, probe_bwrap


def assistant(*args: str) -> tuple[int, str]:
    done = subprocess.run([sys.executable, "-m", "assistant.cli", "tools", *args], capture_output=True, text=True,
                          timeout=60)
    return done.returncode, done.stdout


@pytest.fixture(scope="module")
def policy(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("policy") / "policy.yaml"
    path.write_text(
        "version: 1\n"
        "tools:\n"
        "  deny: [wolfram_alpha]\n"
        "  approval_required: [brave_search]\n"
        "  arguments: {code_interpreter: {code: {pattern: 'print\\(.*\\)'}}}\n"
        "  builtin:\n"
        "    code_interpreter: {enabled: true}\n"
        "    brave_search: {enabled: true}\n"
        "    wolfram_alpha: {enabled: true}\n"
        "  sandbox: {cpu_seconds: 1, wall_seconds: 15, max_output_chars: 500}\n"
        # no model guards here (they need downloads); Code Shield stays on, as in the built-in default
        "stages:\n"
        "  user_input: {llama_guard: {enabled: false}, prompt_guard: {enabled: false}}\n"
        "  model_output: {llama_guard: {enabled: false}}\n"
        "  tool_result: {prompt_guard: {enabled: false}}\n"
    )
    return path


def test_list_shows_schemas_side_effects_and_status(policy: Path) -> None:
    code, out = assistant("list", "--policy", str(policy), "--json")
    assert code == 0
    rows = {row["name"]: row for row in json.loads(out)}
    assert set(rows) == {"code_interpreter", "brave_search", "wolfram_alpha"}
    assert rows["wolfram_alpha"]["status"] == "denied"
    assert rows["brave_search"]["status"] == "approval required"
    assert rows["code_interpreter"]["parameters"]["required"] == ["code"]
    assert rows["code_interpreter"]["side_effects"] is False


def test_run_prints_exactly_the_contract(policy: Path) -> None:
    if probe_bwrap("bwrap", SYSTEM_PYTHON) is not None:
        pytest.fail("bubblewrap is required for this test")
    code, out = assistant("run", "code_interpreter", "--args", '{"code": "print(2 ** 10)"}', "--policy", str(policy))
    assert code == 0
    payload = json.loads(out)
    assert payload == {"ok": True, "output": "completed\n[stdout]1024\n[/stdout]", "error": None, "limits_hit": []}
    code, out = assistant("run", "code_interpreter", "--args", '{"code": "print(sum(x for x in iter(int, 1)))"}',
                          "--policy", str(policy))
    payload = json.loads(out)
    assert code == 0 and payload["ok"] is False and payload["limits_hit"] == ["cpu"]


@pytest.mark.parametrize(
    ("args", "exit_code", "error_part"),
    [
        (["wolfram_alpha", "--args", '{"query": "2+2"}'], 3, "deny list"),
        (["brave_search", "--args", '{"query": "x"}'], 3, "needs approval (pass --approve)"),
        (["code_interpreter", "--args", '{"code": "import os"}'], 3, "pattern"),
        (["code_interpreter", "--args", "{not json"], 2, "not valid JSON"),
        (["code_interpreter", "--args", '{"source": "print(1)"}'], 2, "Extra inputs"),
        (["no_such_tool", "--args", "{}"], 2, "unknown tool"),
    ],
)
def test_refusals_and_bad_input(policy: Path, args: list[str], exit_code: int, error_part: str) -> None:
    code, out = assistant("run", *args, "--policy", str(policy))
    payload = json.loads(out)
    assert code == exit_code and set(payload) == {"ok", "output", "error", "limits_hit"}
    assert payload["ok"] is False and error_part in payload["error"]


def test_default_policy_enables_only_the_sandboxed_interpreter(tmp_path: Path) -> None:
    code, out = assistant("list", "--json")
    assert code == 0 and [row["name"] for row in json.loads(out)] == ["code_interpreter"]
    code, out = assistant("run", "brave_search", "--args", '{"query": "x"}')
    assert code == 3 and "not enabled" in json.loads(out)["error"]
    bad = tmp_path / "bad.yaml"
    bad.write_text("version: 1\ntools: {allow: 3}\n")
    code, out = assistant("run", "code_interpreter", "--args", "{}", "--policy", str(bad))
    assert code == 2


def test_run_takes_the_agents_tool_path_code_shield_included() -> None:
    """Issue 11.6: the same path as the agent - Code Shield on the code before it runs - with the smoke policy."""
    smoke = Path(__file__).resolve().parents[2] / "examples" / "policies" / "offline-smoke.yaml"
    code, out = assistant("run", "code_interpreter", "--args", '{"code": "import os; os.system(\\"id\\")"}',
                          "--policy", str(smoke))
    payload = json.loads(out)
    assert code == 3 and payload["ok"] is False and "code stage" in payload["error"]
    assert "uid=" not in payload["output"]
    code, out = assistant("run", "code_interpreter", "--args", '{"code": "import os; os.system(\\"id\\")"}')
    assert code == 3 and "code stage" in json.loads(out)["error"]  # the built-in default policy too


def test_approve_flag_lets_an_approval_required_call_run(policy: Path, tmp_path: Path) -> None:
    if probe_bwrap("bwrap", SYSTEM_PYTHON) is not None:
        pytest.fail("bubblewrap is required for this test")
    asking = tmp_path / "asking.yaml"
    asking.write_text(policy.read_text().replace("approval_required: [brave_search]",
                                                 "approval_required: [code_interpreter]"))
    code, out = assistant("run", "code_interpreter", "--args", '{"code": "print(7)"}', "--policy", str(asking))
    assert code == 3 and "needs approval" in json.loads(out)["error"]
    code, out = assistant("run", "code_interpreter", "--args", '{"code": "print(7)"}', "--policy", str(asking),
                          "--approve")
    assert code == 0 and json.loads(out)["output"] == "completed\n[stdout]7\n[/stdout]"

"""`assistant run`: output formats, approval modes and the exit-code contract (README, docs/AGENT.md)."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from assistant.cli.main import cli

REPO = Path(__file__).resolve().parents[2]
TINY_DIR = REPO / ".cache" / "tiny-models"

UNGUARDED = """\
version: 1
stages:
  user_input: {llama_guard: {enabled: false}, prompt_guard: {enabled: false}}
  model_output: {llama_guard: {enabled: false}, code_shield: {enabled: false}}
  tool_result: {prompt_guard: {enabled: false}}
  code: {code_shield: {enabled: false}}
tools:
  approval_required: [notify]
  custom: ["tests.cli.run_cli_tools:notify"]
agent: {max_steps: 2}
"""

GUARDED = """\
version: 1
models:
  llama_guard: {source: tiny:llama-guard, device: cpu, dtype: float32}
  prompt_guard: {source: tiny:prompt-guard, device: cpu}
stages:
  model_output: {llama_guard: {enabled: true}, code_shield: {enabled: false}}
"""
NOTIFY = '<|python_tag|>{"name": "notify", "parameters": {"message": "hello"}}<|eom_id|>'


@pytest.fixture(autouse=True)
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ASSISTANT_HOME", str(tmp_path / "home"))


def files(tmp_path: Path, policy: str, *completions: str) -> tuple[Path, Path]:
    policy_path = tmp_path / "policy.yaml"
    policy_path.write_text(policy, encoding="utf-8")
    script = tmp_path / "model.jsonl"
    script.write_text("".join(json.dumps({"completion": c}) + "\n" for c in completions), encoding="utf-8")
    return policy_path, script


def invoke(*args: str, stdin: str | None = None):
    return CliRunner().invoke(cli, ["run", *args], input=stdin)


def test_plain_answer_exits_0(tmp_path: Path) -> None:
    policy, script = files(tmp_path, UNGUARDED, "Hello there.<|eot_id|>")
    result = invoke("hi", "--policy", str(policy), "--model", f"scripted:{script}")
    assert result.exit_code == 0, result.output
    assert result.stdout == "Hello there.\n"


def test_json_prints_one_event_per_line_ending_with_final(tmp_path: Path) -> None:
    policy, script = files(tmp_path, UNGUARDED, "Hello there.<|eot_id|>")
    result = invoke("hi", "--policy", str(policy), "--model", f"scripted:{script}", "--json", "--thread", "j1")
    assert result.exit_code == 0
    events = [json.loads(line) for line in result.stdout.splitlines()]
    assert all("type" in e for e in events)
    assert events[-1]["type"] == "final" and events[-1]["text"] == "Hello there." and events[-1]["thread_id"] == "j1"
    assert "".join(e["text"] for e in events if e["type"] == "token") == "Hello there."


def test_model_running_out_is_exit_5(tmp_path: Path) -> None:
    policy, script = files(tmp_path, UNGUARDED)
    result = invoke("hi", "--policy", str(policy), "--model", f"scripted:{script}", "--json")
    assert result.exit_code == 5
    assert json.loads(result.stdout.splitlines()[-1])["type"] == "error"


def test_bad_input_is_exit_2(tmp_path: Path) -> None:
    policy, script = files(tmp_path, "version: 1\nstages: {nope: 1}\n", "x<|eot_id|>")
    assert invoke("hi", "--policy", str(policy), "--model", f"scripted:{script}").exit_code == 2
    assert invoke("hi", "--policy", str(tmp_path / "missing.yaml"), "--model", f"scripted:{script}").exit_code == 2
    policy, _ = files(tmp_path, UNGUARDED)
    bad_script = tmp_path / "bad.jsonl"
    bad_script.write_text("not json\n", encoding="utf-8")
    assert invoke("hi", "--policy", str(policy), "--model", f"scripted:{bad_script}").exit_code == 2
    assert invoke("hi", "--policy", str(policy), "--approve", "perhaps").exit_code == 2


@pytest.mark.parametrize(("mode", "stdin", "ran"), [("always", None, True), ("never", None, False),
                                                    ("ask", "a\n", True), ("ask", "d\nnot now\n", False)])
def test_approval_modes(tmp_path: Path, mode: str, stdin: str | None, ran: bool) -> None:
    from tests.cli import run_cli_tools

    run_cli_tools.SENT.clear()
    policy, script = files(tmp_path, UNGUARDED, NOTIFY, "Done.<|eot_id|>")
    result = invoke("notify me", "--policy", str(policy), "--model", f"scripted:{script}", "--json",
                    "--approve", mode, stdin=stdin)
    assert result.exit_code == 0, result.output
    events = [json.loads(line) for line in result.stdout.splitlines()]
    assert [e["type"] for e in events if e["type"] in ("approval", "tool_result")] == ["approval", "tool_result"]
    assert (["hello"] if ran else []) == run_cli_tools.SENT


def test_step_limit_refusal_is_exit_3(tmp_path: Path) -> None:
    policy, script = files(tmp_path, UNGUARDED, NOTIFY, NOTIFY, NOTIFY)
    result = invoke("loop", "--policy", str(policy), "--model", f"scripted:{script}", "--approve", "always")
    assert result.exit_code == 3


def test_guard_block_is_3_and_guard_error_is_4(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("assistant.home.tiny_models_dir", lambda: TINY_DIR)  # built once, shared by the tests
    policy, script = files(tmp_path, GUARDED)
    blocked = invoke("jbtrigger no rules now", "--policy", str(policy), "--model", f"scripted:{script}", "--json")
    assert blocked.exit_code == 3, blocked.output
    assert json.loads(blocked.stdout.splitlines()[-1])["type"] == "refusal"
    failed = invoke("zyxgarble", "--policy", str(policy), "--model", f"scripted:{script}", "--json")
    assert failed.exit_code == 4, failed.output
    last = json.loads(failed.stdout.splitlines()[-1])
    assert last["type"] == "refusal" and last["guard_error"] is True


def test_thread_continues_in_a_new_process(tmp_path: Path) -> None:
    policy, script = files(tmp_path, UNGUARDED, "First.<|eot_id|>", "Second.<|eot_id|>")
    second_script = tmp_path / "second.jsonl"
    second_script.write_text(json.dumps({"completion": "Second.<|eot_id|>"}) + "\n", encoding="utf-8")
    env = {**os.environ, "ASSISTANT_HOME": str(tmp_path / "home"), "PYTHONPATH": str(REPO)}
    db = tmp_path / "threads.sqlite"

    def run(text: str, model: Path) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "assistant.cli", "run", text, "--policy", str(policy),
             "--model", f"scripted:{model}", "--thread", "proc", "--db", str(db), "--json"],
            capture_output=True, text=True, env=env, cwd=REPO, timeout=120,
        )

    assert run("remember 42", script).returncode == 0
    second = run("what number?", second_script)
    assert second.returncode == 0, second.stderr
    from assistant.api import Assistant

    reader = Assistant.from_policy(policy, model=f"scripted:{script}", db_path=db)
    history = asyncio.run(reader.history("proc"))
    assert [(m["role"], m["content"]) for m in history] == [
        ("user", "remember 42"), ("assistant", "First."), ("user", "what number?"), ("assistant", "Second."),
    ]

"""The commands with MCP servers from the policy: `tools list`, `tools run server.tool`, and `assistant run` with a
scripted model calling the real PyPI `mcp-server-time` server, its result guarded at tool_result."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from assistant.cli.main import cli
from tests.tools.mcp.conftest import ROOT, demo

POLICY = """\
version: 1
models:
  prompt_guard: {{source: tiny:prompt-guard, device: cpu}}
stages:
  user_input: {{llama_guard: {{enabled: false}}, prompt_guard: {{enabled: false}}}}
  model_output: {{llama_guard: {{enabled: false}}, code_shield: {{enabled: false}}}}
  tool_result: {{prompt_guard: {{enabled: true, score: injection}}}}
  code: {{code_shield: {{enabled: false}}}}
audit: {{path: audit.jsonl}}
tools:
  mcp:
    - {{name: time, command: {python}, args: [-m, mcp_server_time, --local-timezone, UTC],
       on_change: allow}}
{more}agent: {{max_steps: 3}}
"""
CALL_TOKYO = '<|python_tag|>{"name": "get_current_time", "parameters": {"timezone": "Asia/Tokyo"}}<|eom_id|>'


def policy_file(tmp_path: Path, *more: dict) -> Path:
    extra = "".join(f"    - {json.dumps(entry)}\n" for entry in more)
    path = tmp_path / "policy.yaml"
    path.write_text(POLICY.format(python=sys.executable, more=extra), encoding="utf-8")
    return path


@pytest.fixture(autouse=True)
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ASSISTANT_HOME", str(tmp_path / "home"))


def invoke(*args: str):  # in-process: the servers stop when the command's context closes
    return CliRunner().invoke(cli, list(args))


def assistant(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "ASSISTANT_HOME": str(tmp_path / "home"), "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, "-m", "assistant.cli", *args], capture_output=True, text=True, env=env,
                          cwd=tmp_path, timeout=240)


def test_tools_list_shows_mcp_tools_with_their_server_and_failed_servers(tmp_path: Path) -> None:
    policy = policy_file(tmp_path, demo("broken", "--mode", "exit-at-start"))
    listed = invoke("tools", "list", "--policy", str(policy), "--json")
    assert listed.exit_code == 0, listed.output
    rows = {row["name"]: row for row in json.loads(listed.stdout)}
    assert set(rows) == {"get_current_time", "convert_time"}
    assert rows["get_current_time"]["server"] == "time" and rows["get_current_time"]["status"] == "allowed"
    assert "timezone" in rows["get_current_time"]["parameters"]["properties"]
    assert "MCP server broken: failed to start" in listed.stderr and "giving up" in listed.stderr
    plain = invoke("tools", "list", "--policy", str(policy))
    assert "get_current_time  (MCP server time," in plain.stdout


def test_tools_run_takes_a_qualified_name_through_the_agents_path(tmp_path: Path) -> None:
    policy = policy_file(tmp_path)
    ran = invoke("tools", "run", "time.get_current_time", "--args", '{"timezone": "Asia/Tokyo"}', "--policy",
                 str(policy))
    assert ran.exit_code == 0, ran.output
    result = json.loads(ran.stdout)
    assert result["ok"] and json.loads(result["output"])["timezone"] == "Asia/Tokyo"
    bad = invoke("tools", "run", "get_current_time", "--args", '{"timezone": 5}', "--policy", str(policy))
    assert bad.exit_code == 2 and "5 is not of type 'string'" in json.loads(bad.stdout)["error"]


def test_assistant_run_calls_the_time_server_and_guards_its_result(tmp_path: Path) -> None:
    policy = policy_file(tmp_path, demo("broken", "--mode", "exit-at-start"))
    script = tmp_path / "model.jsonl"
    completions = (CALL_TOKYO, "It is late in Tokyo.<|eot_id|>")
    script.write_text("".join(json.dumps({"completion": c}) + "\n" for c in completions), encoding="utf-8")
    run = assistant(tmp_path, "run", "What time is it in Tokyo?", "--policy", str(policy), "--model",
                    f"scripted:{script}", "--json", "--approve", "never")
    assert run.returncode == 0, run.stdout + run.stderr
    events = [json.loads(line) for line in run.stdout.splitlines()]
    notices = [e for e in events if e["type"] == "notice"]
    assert any(e["kind"] == "mcp_server_failed" and "MCP server broken" in e["message"] for e in notices)
    [result] = [e for e in events if e["type"] == "tool_result"]
    assert result["name"] == "get_current_time" and result["ok"] and not result["blocked"]
    assert json.loads(result["output"])["timezone"] == "Asia/Tokyo"
    guard = [e for e in events if e["type"] == "verdict" and e["stage"] == "tool_result"]
    assert guard and all(v["guard"] == "prompt_guard" and v["decision"] == "allow" for v in guard)
    assert events[-1] == {**events[-1], "type": "final", "text": "It is late in Tokyo."}


def test_a_required_server_that_fails_stops_the_run(tmp_path: Path) -> None:
    policy = policy_file(tmp_path, demo("vital", "--mode", "exit-at-start", required=True))
    script = tmp_path / "model.jsonl"
    script.write_text("", encoding="utf-8")
    run = invoke("run", "hi", "--policy", str(policy), "--model", f"scripted:{script}")
    assert run.exit_code == 2
    assert "MCP server vital: failed to start" in run.stderr and "required" in run.stderr

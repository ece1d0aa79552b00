"""Command-line behaviour a new user meets first: `run --json` errors on stdout, `eval redteam --fail-under`
and its note on tiny models, `policy explain` on a tool_result hit."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from assistant.cli.main import cli

UNGUARDED = """\
version: 1
stages:
  user_input: {llama_guard: {enabled: false}, prompt_guard: {enabled: false}}
  model_output: {llama_guard: {enabled: false}, code_shield: {enabled: false}}
  tool_result: {prompt_guard: {enabled: false}}
  code: {code_shield: {enabled: false}}
"""


def invoke(*args: str):
    return CliRunner().invoke(cli, list(args))


@pytest.mark.parametrize("problem", ["missing policy", "bad policy", "bad model spec"])
def test_run_json_bad_input_prints_an_error_event_on_stdout(tmp_path: Path, problem: str) -> None:
    policy = tmp_path / "policy.yaml"
    policy.write_text("version: 1\nbogus: 1\n" if problem == "bad policy" else UNGUARDED, encoding="utf-8")
    if problem == "missing policy":
        policy = tmp_path / "nope.yaml"
    model = "nonsense-spec" if problem == "bad model spec" else f"scripted:{tmp_path / 'none.jsonl'}"
    result = invoke("run", "hello", "--policy", str(policy), "--model", model, "--json")
    assert result.exit_code == 2, result.output
    lines = result.stdout.strip().splitlines()
    assert lines, "stdout must carry the error event"
    event = json.loads(lines[-1])
    assert event["type"] == "error" and event["kind"] == "bad_input" and event["message"]
    assert result.stderr  # and people still read it on stderr


def test_run_plain_bad_input_keeps_stdout_empty(tmp_path: Path) -> None:
    result = invoke("run", "hello", "--policy", str(tmp_path / "nope.yaml"))
    assert result.exit_code == 2 and result.stdout == "" and result.stderr


def _cases(tmp_path: Path) -> Path:
    cases = tmp_path / "cases.jsonl"
    rows = [{"stage": "user_input", "text": "hello", "expected": "allow"},
            {"stage": "user_input", "text": "an attack", "expected": "block"}]
    cases.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    return cases


@pytest.mark.parametrize("rate, code", [(None, 0), ("0.5", 0), ("0.9", 1)])
def test_eval_redteam_fail_under(tmp_path: Path, rate: str | None, code: int) -> None:
    policy = tmp_path / "policy.yaml"
    policy.write_text(UNGUARDED, encoding="utf-8")  # no guard: every case allowed, so half of them are right
    extra = ["--fail-under", rate] if rate else []
    result = invoke("eval", "redteam", str(_cases(tmp_path)), "--policy", str(policy), "--json", *extra)
    assert result.exit_code == code, result.output
    report = json.loads(result.stdout)
    assert report["correct_rate"] == 0.5 and report["tiny_models"] == []
    assert ("below --fail-under" in result.stderr) == (code == 1)
    assert "tiny test models" not in result.output


def test_eval_redteam_says_when_the_guards_are_tiny_models(tmp_path: Path, tiny_guard_dirs: dict[str, Path]) -> None:
    policy = tmp_path / "policy.yaml"
    policy.write_text(
        "version: 1\nmodels:\n  prompt_guard: {source: tiny:prompt-guard, device: cpu}\n"
        "stages:\n  user_input: {llama_guard: {enabled: false}, prompt_guard: {enabled: true}}\n",
        encoding="utf-8",
    )
    result = invoke("eval", "redteam", str(_cases(tmp_path)), "--policy", str(policy))
    assert result.exit_code == 0, result.output
    assert "tiny test models (tiny:prompt-guard)" in result.stdout and "say nothing about real guards" in result.stdout


def test_policy_explain_says_what_a_tool_result_block_does(tmp_path: Path) -> None:
    policy = tmp_path / "policy.yaml"
    policy.write_text("version: 1\n", encoding="utf-8")
    result = invoke("policy", "explain", str(policy))
    assert result.exit_code == 0, result.output
    tool_result = result.stdout.split("tool_result:", 1)[1].split("\n\n", 1)[0]
    assert "withhold the result (the model sees a notice instead of it) and the turn goes on" in tool_result
    assert "block and refuse" not in tool_result and "notice the model sees instead of a withheld result" in tool_result
    user_input = result.stdout.split("user_input:", 1)[1].split("\n\n", 1)[0]
    assert "block and refuse" in user_input

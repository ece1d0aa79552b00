"""Logging (issue 14.4): the library prints nothing by default; `assistant run -v/--log-level` turns the standard
`logging` output on (stderr), and an internal error is logged with its traceback."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner

from assistant.cli.main import cli
from assistant.logs import reset_logging

REPO = Path(__file__).resolve().parents[2]
POLICY = """\
version: 1
stages:
  user_input: {llama_guard: {enabled: false}, prompt_guard: {enabled: false}}
  model_output: {llama_guard: {enabled: false}, code_shield: {enabled: false}}
  tool_result: {prompt_guard: {enabled: false}}
  code: {code_shield: {enabled: false}}
"""


@pytest.fixture(autouse=True)
def clean(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv("ASSISTANT_HOME", str(tmp_path / "home"))
    yield
    reset_logging()


def files(tmp_path: Path) -> tuple[Path, Path]:
    policy = tmp_path / "policy.yaml"
    policy.write_text(POLICY, encoding="utf-8")
    script = tmp_path / "model.jsonl"
    script.write_text(json.dumps({"completion": "Hello.<|eot_id|>"}) + "\n", encoding="utf-8")
    return policy, script


def test_library_loggers_print_nothing_by_default() -> None:
    """Without configuration Python prints warnings of loggers that have no handler ('last resort'); ours have one."""
    code = (
        "import logging, assistant, tools, guards.runtime.pipeline, model.backends.transformers_backend\n"
        "for name in ('assistant.agent', 'tools.executor', 'guards.runtime.pipeline', 'model.backends'):\n"
        "    logging.getLogger(name).error('should not print')\n"
        "logging.getLogger('elsewhere').error('an unconfigured logger prints')\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, check=True)
    assert done.stderr.strip() == "an unconfigured logger prints" and done.stdout == ""


@pytest.mark.parametrize("flags", [["-v"], ["--log-level", "debug"], []])
def test_internal_error_is_logged_with_its_traceback_when_logging_is_on(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, flags: list[str]
) -> None:
    import assistant.agent.nodes as nodes

    def broken(*args: object, **kwargs: object) -> object:
        raise RuntimeError("a bug in the window")

    monkeypatch.setattr(nodes, "prompt_window", broken)
    policy, script = files(tmp_path)
    result = CliRunner().invoke(cli, ["run", *flags, "--policy", str(policy), "--model", f"scripted:{script}",
                                      "--json", "hi"])
    last = json.loads(result.stdout.strip().splitlines()[-1])
    assert last["type"] == "error" and last["kind"] == "internal" and result.exit_code == 1
    if flags:
        assert "ERROR assistant.agent.graph: internal error" in result.stderr
        assert "Traceback (most recent call last)" in result.stderr and "a bug in the window" in result.stderr
    else:
        assert "Traceback" not in result.stderr and "assistant.agent" not in result.stderr


def test_debug_logging_shows_the_guard_stages(tmp_path: Path) -> None:
    """A real `assistant run -vv` process: the answer on stdout, the library's debug log on stderr."""
    policy, script = files(tmp_path)
    env = {**os.environ, "ASSISTANT_HOME": str(tmp_path / "home")}
    command = [sys.executable, "-m", "assistant.cli", "run", "-vv", "--policy", str(policy), "--model",
               f"scripted:{script}", "hi"]
    done = subprocess.run(command, capture_output=True, text=True, cwd=REPO, env=env, timeout=300)
    assert done.returncode == 0 and done.stdout.strip() == "Hello.", done.stderr
    assert "DEBUG guards.runtime.pipeline: user_input: allow (no guard)" in done.stderr
    quiet = subprocess.run(command[:4] + command[5:], capture_output=True, text=True, cwd=REPO, env=env, timeout=300)
    assert quiet.returncode == 0 and quiet.stderr == ""

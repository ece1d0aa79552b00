"""`assistant serve` refuses what it must before binding, and a guard that cannot load fails closed."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import openai
import pytest
from click.testing import CliRunner

from assistant.cli.main import cli
from tests.server.conftest import ServerProcess

BROKEN_GUARD = """\
version: 1
models:
  llama_guard: {source: /nonexistent/llama-guard-dir, device: cpu}
stages:
  user_input: {llama_guard: {enabled: true}, prompt_guard: {enabled: false}}
  model_output: {llama_guard: {enabled: true}, code_shield: {enabled: false}}
  tool_result: {prompt_guard: {enabled: false}}
  code: {code_shield: {enabled: false}}
audit: {path: AUDIT}
"""


def test_no_keys_refuses_a_non_loopback_bind(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ASSISTANT_API_KEYS", raising=False)
    policy = tmp_path / "p.yaml"
    policy.write_text("version: 1\n", encoding="utf-8")
    result = CliRunner().invoke(cli, ["serve", "--policy", str(policy), "--host", "0.0.0.0"])
    assert result.exit_code == 2 and "without API keys" in result.output


def test_bad_keys_file_and_bad_policy(tmp_path: Path) -> None:
    keys = tmp_path / "keys.txt"
    keys.write_text("short\n", encoding="utf-8")
    policy = tmp_path / "p.yaml"
    policy.write_text("version: 1\nserver: {max_messages: 0}\n", encoding="utf-8")
    result = CliRunner().invoke(cli, ["serve", "--policy", str(policy), "--api-keys-file", str(keys)])
    assert result.exit_code == 2 and "keys.txt:1" in result.output
    result = CliRunner().invoke(cli, ["serve", "--policy", str(policy)])
    assert result.exit_code == 2 and "server.max_messages" in result.output


@pytest.fixture(scope="module")
def broken_guard_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    directory = tmp_path_factory.mktemp("broken")
    server = ServerProcess(directory, policy=BROKEN_GUARD.replace("AUDIT", str(directory / "audit.jsonl")), keys=())
    yield server.start(expect_ready=False)
    server.stop()


def test_a_guard_that_cannot_load_fails_closed(broken_guard_server: ServerProcess) -> None:
    s = broken_guard_server
    ready = httpx.get(s.base + "/readyz")
    assert ready.status_code == 503 and ready.json()["status"] == "degraded"
    assert "llama_guard" in ready.text
    c = openai.OpenAI(base_url=s.base + "/v1", api_key="unused", max_retries=0)  # keyless loopback server
    r = c.chat.completions.create(model="m", messages=[{"role": "user", "content": "hello"}])
    assert r.choices[0].finish_reason == "content_filter"
    assert r.model_extra["guard"]["refusal"] == {"stage": "user_input", "guard_error": True}

"""`assistant serve` refuses what it must before binding, and a guard that cannot load fails closed."""

from __future__ import annotations

from pathlib import Path

import httpx
import openai
import pytest
from click.testing import CliRunner

from assistant.cli.main import cli
from tests.server.conftest import ServerProcess


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


def test_a_guard_that_cannot_load_fails_closed(small_server: ServerProcess) -> None:
    s = small_server
    ready = httpx.get(s.base + "/readyz")
    assert ready.status_code == 503 and ready.json()["status"] == "degraded"
    assert "prompt_guard" in ready.text
    c = openai.OpenAI(base_url=s.base + "/v1", api_key="unused", max_retries=0)  # keyless loopback server
    call = {"id": "c1", "type": "function", "function": {"name": "lookup", "arguments": "{}"}}
    r = c.chat.completions.create(model="m", messages=[  # type: ignore[list-item]
        {"role": "user", "content": "look it up"}, {"role": "assistant", "content": None, "tool_calls": [call]},
        {"role": "tool", "tool_call_id": "c1", "content": "the result"}])
    assert r.choices[0].finish_reason == "content_filter"
    assert r.model_extra["guard"]["refusal"] == {"stage": "tool_result", "guard_error": True}

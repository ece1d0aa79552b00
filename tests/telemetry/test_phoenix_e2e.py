"""End to end: a guarded tool turn with an approval, exported over OTLP/HTTP to a real collector (Arize Phoenix, in a
virtualenv of its own) by a process configured only through the standard OTEL_* variables, then read back from it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.agent.conftest import TINY_DIR, write_script
from tests.telemetry.conftest import OTEL_VARIABLES
from tests.telemetry.phoenix import Phoenix, start_phoenix

pytestmark = pytest.mark.phoenix
REPO = Path(__file__).resolve().parents[2]
POLICY = """\
version: 1
models:
  main: {source: tiny:llama-3.1-instruct, max_new_tokens: 64}
  llama_guard: {source: tiny:llama-guard, variant: 8b, device: cpu, dtype: float32}
  prompt_guard: {source: tiny:prompt-guard, device: cpu}
stages:
  user_input: {llama_guard: {enabled: true}, prompt_guard: {enabled: true, score: jailbreak}}
  model_output: {llama_guard: {enabled: true}, code_shield: {enabled: false}}
  tool_call: {llama_guard: {enabled: true}}
  tool_result: {prompt_guard: {enabled: true, score: injection}}
  code: {code_shield: {enabled: false}}
audit: {path: audit.jsonl, texts: hash}
tools:
  untrusted_content: ask
  custom: ["tests.telemetry.e2e_tools:fetch_page", "tests.telemetry.e2e_tools:send_email"]
"""
SCRIPT = (
    '<|python_tag|>{"name": "fetch_page", "parameters": {"name": "news"}}<|eom_id|>',
    '<|python_tag|>{"name": "send_email", "parameters": {"to": "bob@example.test", "body": "hi"}}<|eom_id|>',
    "Done: I emailed Bob.<|eot_id|>",
)
TURN = """\
import json, sys
from assistant.api import Assistant
bot = Assistant.from_policy(sys.argv[1], model="scripted:" + sys.argv[2], db_path=sys.argv[3], tiny_dir=sys.argv[4],
                            approve=lambda request: True)
result = bot.run("Read the news and email Bob", thread="t-phoenix")
print(json.dumps({"text": result.text}))
"""  # the spans leave when the process exits (the SDK flushes its batch at exit)


@pytest.fixture(scope="module")
def phoenix(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Phoenix]:
    server = start_phoenix(tmp_path_factory.mktemp("phoenix"))
    yield server
    server.stop()


def attribute(span: dict[str, Any], key: str) -> Any:
    """A span attribute as Phoenix returns it (flat `a.b` keys, or nested {"a": {"b": ...}})."""
    attributes = span.get("attributes") or {}
    if key in attributes:
        return attributes[key]
    value: Any = attributes
    for part in key.split("."):
        if not isinstance(value, dict) or part not in value:
            return None
        value = value[part]
    return value


def test_a_guarded_tool_turn_reaches_the_collector(phoenix: Phoenix, tmp_path: Path) -> None:
    policy = tmp_path / "policy.yaml"
    policy.write_text(POLICY, encoding="utf-8")
    script = write_script(tmp_path, *SCRIPT)
    env = {k: v for k, v in os.environ.items() if k not in OTEL_VARIABLES}
    env.update(ASSISTANT_HOME=str(tmp_path / "home"), PYTHONPATH=str(REPO),
               OTEL_EXPORTER_OTLP_ENDPOINT=phoenix.url, OTEL_SERVICE_NAME="guarded-e2e")
    out = subprocess.run(
        [sys.executable, "-c", TURN, str(policy), str(script), str(tmp_path / "threads.sqlite"), str(TINY_DIR)],
        capture_output=True, text=True, env=env, cwd=REPO, timeout=600,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    assert json.loads(out.stdout.strip().splitlines()[-1]) == {"text": "Done: I emailed Bob."}

    turns = [s for s in phoenix.spans(least=1) if s["name"] == "invoke_agent assistant"
             and attribute(s, "assistant.thread_id") == "t-phoenix"]
    assert len(turns) == 1
    turn = turns[0]
    trace_id = turn["context"]["trace_id"]
    spans = phoenix.spans(trace_id, least=20)
    by_id = {s["context"]["span_id"]: s for s in spans}
    names = sorted(s["name"] for s in spans)
    assert names.count("chat model.jsonl") == 3
    assert {"approval send_email", "execute_tool fetch_page", "execute_tool send_email", "guard llama_guard",
            "guard prompt_guard"} <= set(names)
    stages = {attribute(s, "assistant.guard.stage") for s in spans if s["name"].startswith("guard ")}
    assert stages == {"user_input", "tool_call", "tool_result", "model_output"}
    assert attribute(turn, "assistant.outcome") == "final" and turn["parent_id"] is None
    email = next(s for s in spans if s["name"] == "execute_tool send_email")
    assert by_id[email["parent_id"]]["context"]["span_id"] == turn["context"]["span_id"]
    assert attribute(email, "assistant.tool.approval") == "approve"
    assert attribute(email, "assistant.tool.side_effects") is True
    result_checks = [s for s in spans if s["parent_id"] == email["context"]["span_id"]]
    assert {attribute(s, "assistant.guard.stage") for s in result_checks} == {"model_output", "tool_result"}
    for check in (s for s in spans if s["name"].startswith("guard ")):
        assert attribute(check, "assistant.guard.decision") == "allow"
        assert attribute(check, "assistant.guard.latency_ms") > 0
    # audit.texts: hash - the collector holds no text of the turn
    stored = json.dumps(spans)
    for fragment in ("Read the news", "bob@example.test", "emailed Bob", "weather is mild"):
        assert fragment not in stored

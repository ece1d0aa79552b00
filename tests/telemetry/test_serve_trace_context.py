"""`assistant serve` with W3C Trace Context: a caller's traceparent parents the turn; traceresponse names the trace."""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from starlette.testclient import TestClient

from assistant.server.app import ServerSettings, create_app
from assistant.server.auth import KeyStore
from tests.agent.conftest import TINY_DIR
from tests.telemetry.conftest import all_attribute_text, one, parent_of

POLICY = """\
version: 1
models:
  llama_guard: {source: tiny:llama-guard, variant: 8b, device: cpu, dtype: float32}
  prompt_guard: {source: tiny:prompt-guard, device: cpu}
stages:
  user_input: {llama_guard: {enabled: true}, prompt_guard: {enabled: false}}
  model_output: {llama_guard: {enabled: true}, code_shield: {enabled: false}}
  code: {code_shield: {enabled: false}}
audit: {path: audit.jsonl, texts: hash}
"""
CALLER_TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
CALLER_SPAN = "00f067aa0ba902b7"


@pytest.fixture
def client(tmp_path: Path, spans) -> Iterator[TestClient]:
    policy = tmp_path / "policy.yaml"
    policy.write_text(POLICY, encoding="utf-8")
    script = tmp_path / "model.jsonl"
    script.write_text(json.dumps({"match": ".*", "completion": "Hello from the model.<|eot_id|>"}) + "\n")
    settings = ServerSettings(policy_path=policy, keys=KeyStore.load(None), model=f"scripted-keyed:{script}",
                              db_path=tmp_path / "threads.sqlite", tiny_dir=TINY_DIR)
    with TestClient(create_app(settings), base_url="http://127.0.0.1:8000") as test_client:
        deadline = time.monotonic() + 120
        while test_client.get("/readyz").status_code != 200:
            assert time.monotonic() < deadline, "the server did not get ready"
            time.sleep(0.1)
        yield test_client


def chat(client: TestClient, **headers: str):
    body = {"model": "guarded-assistant", "messages": [{"role": "user", "content": "Say hello, please"}]}
    return client.post("/v1/chat/completions", json=body, headers=headers)


def test_a_callers_traceparent_parents_the_turn(client: TestClient, spans) -> None:
    spans.clear()
    response = chat(client, traceparent=f"00-{CALLER_TRACE}-{CALLER_SPAN}-01")
    assert response.status_code == 200, response.text
    assert response.json()["choices"][0]["message"]["content"] == "Hello from the model."
    finished = spans.get_finished_spans()
    request = one(finished, "POST /v1/chat/completions")
    assert f"{request.context.trace_id:032x}" == CALLER_TRACE
    assert f"{request.parent.span_id:016x}" == CALLER_SPAN and request.parent.is_remote
    assert request.attributes["http.response.status_code"] == 200
    turn = one(finished, "invoke_agent assistant")
    assert parent_of(finished, turn) is request
    assert turn.attributes["assistant.interface"] == "server" and turn.attributes["assistant.outcome"] == "final"
    assert all(f"{s.context.trace_id:032x}" == CALLER_TRACE for s in finished)
    # the response names the trace and the server's span in it (W3C Trace Context level 2)
    assert response.headers["traceresponse"] == f"00-{CALLER_TRACE}-{request.context.span_id:016x}-01"
    assert "Say hello" not in all_attribute_text(finished) and "Hello from" not in all_attribute_text(finished)


def test_without_traceparent_the_request_starts_a_trace(client: TestClient, spans) -> None:
    spans.clear()
    response = chat(client, traceparent="00-not-a-valid-header-01")  # malformed: ignored, as W3C says
    assert response.status_code == 200
    request = one(spans.get_finished_spans(), "POST /v1/chat/completions")
    assert request.parent is None
    match = re.fullmatch(r"00-([0-9a-f]{32})-([0-9a-f]{16})-01", response.headers["traceresponse"])
    assert match and match.group(1) == f"{request.context.trace_id:032x}"


def test_probes_are_not_traced(client: TestClient, spans) -> None:
    spans.clear()
    response = client.get("/readyz")
    assert response.status_code == 200 and "traceresponse" not in response.headers
    assert spans.get_finished_spans() == ()

"""Requests to the servers a deployer runs - the OpenAI-compatible main model (vLLM) and the remote Llama Guard -
are HTTP client spans of the turn's trace and carry its `traceparent`, so those servers' own spans join the trace.
Without tracing no header is added."""

from __future__ import annotations

import json
import os

import httpx
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from guards.llama_guard.remote import RemoteLlamaGuard
from model import telemetry
from model.backends import GenerationParams
from model.backends.openai_backend import OpenAIBackend
from tests.model.test_backend_openai_marking import sse
from tests.telemetry.conftest import parent_of

CHUNKS = [{"index": 0, "text": "Hi.", "token_ids": [13347, 13], "finish_reason": "stop"}]


def backend(headers: list[httpx.Headers]) -> OpenAIBackend:
    def handle(request: httpx.Request) -> httpx.Response:
        headers.append(request.headers)
        return httpx.Response(200, content=sse(CHUNKS), headers={"content-type": "text/event-stream"})

    made = OpenAIBackend("http://vllm.test:8000", model="m")
    made._client = httpx.AsyncClient(transport=httpx.MockTransport(handle))
    return made


async def test_the_model_server_request_is_a_client_span_carrying_traceparent(spans: InMemorySpanExporter) -> None:
    seen: list[httpx.Headers] = []
    tracer = telemetry.tracer_for(telemetry.resolve_settings(os.environ))
    turn = telemetry.start(tracer, "turn")
    with telemetry.within(turn):
        text = "".join([str(d) async for d in backend(seen).stream([128000, 9906], GenerationParams())])
    telemetry.end(turn)
    assert text.startswith("Hi.")
    finished = spans.get_finished_spans()
    [call] = [s for s in finished if s.name == "POST /v1/completions"]
    assert call.kind.name == "CLIENT" and call.attributes["http.response.status_code"] == 200
    assert call.attributes["server.address"] == "vllm.test" and parent_of(finished, call).name == "turn"
    trace_id, span_id = f"{call.context.trace_id:032x}", f"{call.context.span_id:016x}"
    assert seen[0]["traceparent"] == f"00-{trace_id}-{span_id}-01"  # the server's spans become its children


async def test_without_tracing_no_header_is_sent(no_otel_env: None) -> None:
    seen: list[httpx.Headers] = []
    [_ async for _ in backend(seen).stream([128000, 9906], GenerationParams())]
    assert "traceparent" not in seen[0]


def test_the_remote_guard_request_carries_traceparent_too(spans: InMemorySpanExporter) -> None:
    seen: list[httpx.Headers] = []

    def handle(request: httpx.Request) -> httpx.Response:
        seen.append(request.headers)
        body = json.dumps({"data": [{"id": "tiny-guard"}]}).encode()  # a stream, read as the guard reads one
        return httpx.Response(200, stream=httpx.ByteStream(body), headers={"content-type": "application/json"})

    guard = RemoteLlamaGuard("http://guard.test:8000/v1", model="tiny-guard")
    guard._client = httpx.Client(transport=httpx.MockTransport(handle))
    tracer = telemetry.tracer_for(telemetry.resolve_settings(os.environ))
    check = telemetry.start(tracer, "guard check")
    with telemetry.within(check):
        guard.probe()
    telemetry.end(check)
    finished = spans.get_finished_spans()
    [call] = [s for s in finished if s.name == "GET /v1/models"]
    assert call.kind.name == "CLIENT" and parent_of(finished, call).name == "guard check"
    assert seen[0]["traceparent"] == f"00-{call.context.trace_id:032x}-{call.context.span_id:016x}-01"

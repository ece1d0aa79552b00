"""`tools.mcp[].trace_context`: a server the deployer trusts gets the call's trace context - in `params._meta` (stdio
and HTTP) and, over HTTP, as the `traceparent` header - naming the `tools/call` client span; by default a server
gets none. The demo MCP server reports what it received."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from model import telemetry
from tests.telemetry.conftest import one
from tests.tools.mcp.conftest import demo, tools_config
from tests.tools.mcp.test_mcp_http import http_server  # noqa: F401  (fixture)
from tools.mcp import start_mcp_tools
from tools.mcp.transport import trace_headers_of


def traced_call(entry: dict[str, Any], *, traced: bool = True) -> dict[str, Any]:
    """Call the demo server's `trace_context` tool (under a root span when `traced`); what the server received."""
    config = tools_config({**entry, "allow": ["trace_context"], "timeout_s": 10})
    with start_mcp_tools(config) as started:
        assert started.notices == ()
        [tool] = started.tools
        root = telemetry.start(telemetry.tracer_for(telemetry.Settings()), "root") if traced else None
        with telemetry.within(root):
            output = asyncio.run(tool.run({}))
        telemetry.end(root)
    assert output.ok, output.error
    received: dict[str, Any] = json.loads(output.output)
    return received


def client_span_traceparent(spans: InMemorySpanExporter, name: str) -> str:
    span = one(spans.get_finished_spans(), f"tools/call {name}.trace_context")
    context = span.get_span_context()
    return f"00-{context.trace_id:032x}-{context.span_id:016x}-01"


def test_a_trusted_http_server_gets_the_context_as_meta_and_header(spans: InMemorySpanExporter, http_server) -> None:  # noqa: F811
    port, _process = http_server
    received = traced_call({"name": "mine", "url": f"http://127.0.0.1:{port}/mcp", "trace_context": True})
    expected = client_span_traceparent(spans, "mine")
    assert received["meta"]["traceparent"] == expected
    assert received["headers"]["traceparent"] == expected


def test_an_http_server_gets_no_context_by_default(spans: InMemorySpanExporter, http_server) -> None:  # noqa: F811
    port, _process = http_server
    received = traced_call({"name": "theirs", "url": f"http://127.0.0.1:{port}/mcp"})
    one(spans.get_finished_spans(), "tools/call theirs.trace_context")  # traced all the same
    assert received == {"meta": {"traceparent": None, "tracestate": None},
                        "headers": {"traceparent": None, "tracestate": None}}


def test_a_trusted_stdio_server_gets_the_context_in_meta(spans: InMemorySpanExporter) -> None:
    received = traced_call(demo("local", trace_context=True))
    assert received == {"meta": {"traceparent": client_span_traceparent(spans, "local"), "tracestate": None},
                        "headers": None}  # stdio has no headers: _meta is how MCP carries it


def test_untraced_a_trusted_server_gets_nothing(no_otel_env: None) -> None:
    received = traced_call(demo("local", trace_context=True), traced=False)
    assert received["meta"] == {"traceparent": None, "tracestate": None}


def test_headers_come_only_from_the_requests_meta() -> None:
    body = {"jsonrpc": "2.0", "method": "tools/call", "params": {"name": "x", "_meta": {
        "traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01", "other": "no"}}}
    assert trace_headers_of(json.dumps(body).encode()) == {
        "traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"}
    assert trace_headers_of(b'{"jsonrpc": "2.0", "method": "tools/list"}') == {}
    assert trace_headers_of(b"not json") == {}
    assert trace_headers_of(b"[]") == {}

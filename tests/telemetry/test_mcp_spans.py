"""An MCP call in a traced turn: a client span `tools/call SERVER.TOOL` under the tool run's span, with the server
and tool named; the guard checks of its result hang off the run. A real stdio MCP server (the shifty test server)."""

from __future__ import annotations

from pathlib import Path

import pytest
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from tests.telemetry.conftest import one, parent_of
from tests.tools.mcp.test_mcp_vetting import BENIGN, bot, call, setup


async def test_an_mcp_call_is_a_client_span_of_its_tool_run(
        tmp_path: Path, spans: InMemorySpanExporter, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ASSISTANT_HOME", str(tmp_path / "home"))
    policy = setup(tmp_path, BENIGN, on_change="allow")
    with bot(tmp_path, policy, call("weather", city="Oslo"), "Sunny in Oslo.<|eot_id|>") as assistant:
        result = await assistant.arun("weather in Oslo?", thread="t-mcp")
    assert result.text == "Sunny in Oslo."
    finished = spans.get_finished_spans()
    mcp = one(finished, "tools/call shifty.weather")
    run = parent_of(finished, mcp)
    assert run is not None and run.name == "execute_tool weather"
    assert mcp.kind.name == "CLIENT" and mcp.attributes["mcp.server"] == "shifty"
    assert mcp.attributes["mcp.tool"] == "weather" and mcp.attributes["assistant.tool.ok"] is True
    result_checks = [s for s in finished if s.attributes.get("assistant.guard.stage") == "tool_result"]
    assert result_checks and all(parent_of(finished, s) is run for s in result_checks)

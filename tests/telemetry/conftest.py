"""Tracing tests: the real agent (scripted main model, tiny trained guards) with the SDK's in-memory exporter.

`spans` turns tracing on the way a deployer does (`OTEL_TRACES_EXPORTER=otlp`) and installs a TracerProvider whose
exporter keeps the finished spans in memory, in place of the OTLP exporter.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from model import telemetry
from tests.agent.conftest import app_tools, home, make_assistant, tool_log  # noqa: F401  (fixtures)

OTEL_VARIABLES = ("OTEL_SDK_DISABLED", "OTEL_TRACES_EXPORTER", "OTEL_EXPORTER_OTLP_ENDPOINT",
                  "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "OTEL_EXPORTER_OTLP_HEADERS",
                  "OTEL_EXPORTER_OTLP_TRACES_HEADERS", "OTEL_SERVICE_NAME")


@pytest.fixture
def no_otel_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in OTEL_VARIABLES:
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def spans(monkeypatch: pytest.MonkeyPatch, no_otel_env: None) -> Iterator[InMemorySpanExporter]:
    monkeypatch.setenv("OTEL_TRACES_EXPORTER", "otlp")
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    telemetry.install_provider(provider)
    try:
        yield exporter
    finally:
        telemetry.install_provider(None)
        provider.shutdown()


def by_name(finished: Any, name: str) -> list[ReadableSpan]:
    return [s for s in finished if s.name == name]


def one(finished: Any, name: str) -> ReadableSpan:
    found = by_name(finished, name)
    assert len(found) == 1, f"{len(found)} spans named {name!r}: {[s.name for s in finished]}"
    return found[0]


def parent_of(finished: Any, span: ReadableSpan) -> ReadableSpan | None:
    if span.parent is None:
        return None
    return next(s for s in finished if s.context.span_id == span.parent.span_id)


def all_attribute_text(finished: Any) -> str:
    """Every attribute value and event of every span, as one text (what a collector would store)."""
    parts: list[str] = []
    for s in finished:
        parts.extend(f"{k}={v}" for k, v in (s.attributes or {}).items())
        parts.extend(s.name for s in [s])
        for event in s.events:
            parts.append(event.name)
            parts.extend(f"{k}={v}" for k, v in (event.attributes or {}).items())
        if s.status.description:
            parts.append(s.status.description)
    return "\n".join(parts)

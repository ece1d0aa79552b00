"""The OpenTelemetry SDK side: one TracerProvider per distinct `Settings`, exporting over OTLP/HTTP (protobuf).

Imported only once tracing is on: the SDK and the exporter (with `requests` and protobuf) load in `build_provider`,
never at import, so a process that does not trace never loads them.
"""

from __future__ import annotations

import threading
from typing import Any

from model.telemetry.settings import Settings

INSTRUMENTATION = "guarded-assistant"
_built: dict[Settings, tuple[Any, Any]] = {}  # settings -> (TracerProvider, its tracer)
_lock = threading.Lock()


def build_provider(settings: Settings) -> Any:
    """A TracerProvider sampling `settings.sample_ratio` of new traces (a caller's sampled parent is followed), its
    spans batched to the OTLP/HTTP endpoint; flushed at interpreter exit (the SDK's `shutdown_on_exit`)."""
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor
    from opentelemetry.sdk.trace.sampling import ParentBased, TraceIdRatioBased

    provider = TracerProvider(
        resource=Resource.create({"service.name": settings.service_name}),
        sampler=ParentBased(TraceIdRatioBased(settings.sample_ratio)),
    )
    exporter = OTLPSpanExporter(endpoint=settings.endpoint, headers=dict(settings.headers))
    provider.add_span_processor(BatchSpanProcessor(exporter))
    return provider


def tracer_for_settings(settings: Settings) -> Any:
    """The tracer for `settings`, built on first use and kept for the process."""
    with _lock:
        built = _built.get(settings)
        if built is None:
            provider = build_provider(settings)
            built = _built[settings] = (provider, provider.get_tracer(INSTRUMENTATION))
        return built[1]


def flush() -> None:
    """Export every span ended so far (the CLI's `run` before it exits; tests before reading a collector)."""
    with _lock:
        providers = [provider for provider, _ in _built.values()]
    for provider in providers:
        provider.force_flush()


__all__ = ["INSTRUMENTATION", "build_provider", "flush", "tracer_for_settings"]

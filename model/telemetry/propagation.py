"""W3C Trace Context at the edges: a caller's `traceparent` in, a `traceresponse` out (Trace Context level 2)."""

from __future__ import annotations

from typing import Any

from model.telemetry.spans import Trace


def remote_context(traceparent: str | None, tracestate: str | None = None) -> Any:
    """The OpenTelemetry Context of a caller's span from its headers; None when there is no valid `traceparent`
    (a malformed one is ignored, as the W3C specification says: the request starts a trace of its own)."""
    if not traceparent:
        return None
    from opentelemetry.trace import get_current_span
    from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

    carrier = {"traceparent": traceparent, **({"tracestate": tracestate} if tracestate else {})}
    context = TraceContextTextMapPropagator().extract(carrier)
    return context if get_current_span(context).get_span_context().is_valid else None


def traceresponse(trace: Trace) -> str:
    """`00-<trace id>-<span id>-<flags>`: the trace the response belongs to and the server's span in it."""
    flags = int(trace.span.get_span_context().trace_flags)
    return f"00-{trace.trace_id}-{trace.span_id}-{flags:02x}"


__all__ = ["remote_context", "traceresponse"]

"""W3C Trace Context at the edges: a caller's `traceparent` in, a `traceresponse` out (Trace Context level 2)."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from model.telemetry.spans import Trace, child


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


def link_to(traceparent: str | None) -> Any:
    """An OpenTelemetry Link to the span a `traceparent` names, or None when it is missing or malformed."""
    context = remote_context(traceparent)
    if context is None:
        return None
    from opentelemetry.trace import Link, get_current_span

    return Link(get_current_span(context).get_span_context())


def outgoing_headers(trace: Trace | None) -> dict[str, str]:
    """`traceparent` (and `tracestate`) naming `trace`'s span, for a request to a server the deployer runs (a model
    or guard server), so its own spans join the turn's trace; {} without a trace."""
    if trace is None:
        return {}
    from opentelemetry.trace import set_span_in_context
    from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

    carrier: dict[str, str] = {}
    TraceContextTextMapPropagator().inject(carrier, context=set_span_in_context(trace.span))
    return carrier


def client_span(method: str, url: str) -> Trace | None:
    """An HTTP client span (OpenTelemetry's HTTP conventions) under the current trace, or None when tracing is off.
    The URL is the deployer's server address; no query string or body is recorded."""
    return child(f"{method} {urlsplit(url).path or '/'}", {"http.request.method": method, "url.full": url,
                                                          "server.address": urlsplit(url).hostname or ""},
                 kind="client")


def traceresponse(trace: Trace) -> str:
    """`00-<trace id>-<span id>-<flags>`: the trace the response belongs to and the server's span in it (the same
    form as a `traceparent` naming that span, which is what a guard's own process is sent)."""
    flags = int(trace.span.get_span_context().trace_flags)
    return f"00-{trace.trace_id}-{trace.span_id}-{flags:02x}"


__all__ = ["client_span", "link_to", "outgoing_headers", "remote_context", "traceresponse"]

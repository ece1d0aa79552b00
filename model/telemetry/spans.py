"""Spans that cost nothing when tracing is off: the trace in progress is this module's ContextVar, not OpenTelemetry's.

A turn starts a `Trace` (a span and the tracer its children come from) only when its settings say to trace; every
other layer asks `span(...)`, which is a no-op yielding None while no trace is current. So with tracing off nothing
imports OpenTelemetry and each seam costs one ContextVar read. Children are started with their parent's context
passed explicitly, and the current trace is set and reset inside one coroutine step (`span`, `within`, and
`each_within` around each step of an async iterator), never across a `yield`: an async generator may be resumed from
another task, where resetting would fail.

Attributes hold no text unless the caller passes one through `text_attributes`, which follows `audit.texts`.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
from collections.abc import AsyncGenerator, Iterator, Mapping, Sequence
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any, Literal, TypeVar

from model.telemetry import export
from model.telemetry.settings import Settings

TextMode = Literal["full", "hash", "redact"]
Kind = Literal["internal", "server", "client"]
T = TypeVar("T")

_CURRENT: ContextVar[Trace | None] = ContextVar("assistant_trace", default=None)
_installed: list[Any] = []  # a TracerProvider installed by a test or an embedding application


@dataclass(frozen=True)
class Trace:
    """A span in progress and the tracer its children come from. `settings` are those its exporter was built from,
    for a process of our own to export its spans the same way (guards.runtime.process); None under an installed
    provider, which another process cannot share."""

    tracer: Any
    span: Any
    settings: Settings | None = None

    @property
    def trace_id(self) -> str:
        return f"{self.span.get_span_context().trace_id:032x}"

    @property
    def span_id(self) -> str:
        return f"{self.span.get_span_context().span_id:016x}"


def install_provider(provider: Any | None) -> None:
    """Trace through `provider` (for example one with the SDK's InMemorySpanExporter) instead of the OTLP exporter
    built from the settings, whenever the settings say to trace; None goes back to the exporter."""
    _installed.clear()
    if provider is not None:
        _installed.append(provider)


def tracer_for(settings: Settings | None) -> Any | None:
    """The tracer to trace with under `settings`; None (and nothing imported) when they say not to trace."""
    if settings is None:
        return None
    if _installed:
        return _installed[0].get_tracer(export.INSTRUMENTATION)
    return export.tracer_for_settings(settings)


def current() -> Trace | None:
    return _CURRENT.get()


def start(tracer: Any, name: str, attributes: Mapping[str, Any] | None = None, *, parent: Trace | None = None,
          remote: Any = None, kind: Kind = "internal", settings: Settings | None = None,
          links: Sequence[Any] = ()) -> Trace:
    """A new span: the child of `parent`, else of `remote` (an extracted OpenTelemetry Context: a caller's
    traceparent), else a root. `settings`: those `tracer` came from (`tracer_for`), else the parent's. `links`:
    OpenTelemetry Links to spans of other traces. End it with `end`."""
    from opentelemetry import trace as otel

    context = otel.set_span_in_context(parent.span) if parent is not None else remote
    if context is None:
        from opentelemetry.context import Context

        context = Context()  # a root: never an unrelated span some library left current
    span = tracer.start_span(name, context=context, kind=otel.SpanKind[kind.upper()],
                             attributes=clean(attributes or {}), links=links or None)
    if settings is None and parent is not None:
        settings = parent.settings
    return Trace(tracer, span, None if _installed else settings)


def child(name: str, attributes: Mapping[str, Any] | None = None, *, kind: Kind = "internal") -> Trace | None:
    """A child of the current trace, or None when there is none (tracing off). End it with `end`."""
    parent = _CURRENT.get()
    return None if parent is None else start(parent.tracer, name, attributes, parent=parent, kind=kind)


def end(trace: Trace | None, attributes: Mapping[str, Any] | None = None, *,
        error: BaseException | None = None) -> None:
    """Set the last attributes and end the span (a no-op for None). An error is named by its type only: exception
    messages can hold user or tool text."""
    if trace is None:
        return
    if attributes:
        trace.span.set_attributes(clean(attributes))
    if error is not None:
        mark_error(trace, error)
    trace.span.end()


def mark_error(trace: Trace, error: BaseException | str) -> None:
    from opentelemetry.trace import Status, StatusCode

    if isinstance(error, asyncio.CancelledError | GeneratorExit):
        trace.span.set_attribute("assistant.cancelled", True)  # stopped from outside: not a failure of its own
        return
    name = error if isinstance(error, str) else type(error).__name__
    trace.span.set_attribute("error.type", name)
    trace.span.set_status(Status(StatusCode.ERROR, name))


def annotate(trace: Trace | Any | None, attributes: Mapping[str, Any]) -> None:
    """Add attributes to a trace's span (or a span), if any."""
    if trace is None:
        return
    target = trace.span if isinstance(trace, Trace) else trace
    target.set_attributes(clean(attributes))


@contextlib.contextmanager
def span(name: str, attributes: Mapping[str, Any] | None = None, *, kind: Kind = "internal") -> Iterator[Any | None]:
    """A child span of the current trace, current for the block; yields the span, or None when tracing is off."""
    trace = child(name, attributes, kind=kind)
    if trace is None:
        yield None
        return
    token = _CURRENT.set(trace)
    try:
        yield trace.span
    except BaseException as exc:
        mark_error(trace, exc)
        raise
    finally:
        _CURRENT.reset(token)
        trace.span.end()


@contextlib.contextmanager
def within(trace: Trace | None) -> Iterator[None]:
    """`trace` is the current one for the block (its spans are children of it); None leaves the current one."""
    if trace is None:
        yield
        return
    token = _CURRENT.set(trace)
    try:
        yield
    finally:
        _CURRENT.reset(token)


def each_within(items: AsyncGenerator[T, None], trace: Trace | None) -> AsyncGenerator[T, None]:
    """`items` with `trace` current during each step (what the steps start, tasks included, is a child of it);
    `items` itself when there is no trace. Closing the result closes `items`."""
    return items if trace is None else _each_within(items, trace)


async def _each_within(items: AsyncGenerator[T, None], trace: Trace) -> AsyncGenerator[T, None]:
    try:
        while True:
            with within(trace):
                try:
                    item = await anext(items)
                except StopAsyncIteration:
                    return
            yield item
    finally:
        with within(trace):
            await items.aclose()


def text_attributes(key: str, text: str, mode: TextMode) -> dict[str, Any]:
    """A text as `audit.texts` allows: itself (`full`), its sha256 (`hash`) or only its length (`redact`)."""
    out: dict[str, Any] = {f"{key}.chars": len(text)}
    if mode == "full":
        out[key] = text
    elif mode == "hash":
        out[f"{key}.sha256"] = hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()
    elif mode != "redact":
        raise ValueError(f"unknown text mode {mode!r}; expected full, hash or redact")
    return out


def clean(attributes: Mapping[str, Any]) -> dict[str, Any]:
    """Attributes OpenTelemetry accepts: None dropped, lists as tuples."""
    return {k: tuple(v) if isinstance(v, list) else v for k, v in attributes.items() if v is not None}


__all__ = ["Trace", "annotate", "child", "current", "each_within", "end", "install_provider", "mark_error",
           "span", "start", "text_attributes", "tracer_for", "within"]

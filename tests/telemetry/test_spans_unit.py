"""The span helpers: nothing happens without a current trace, texts follow audit.texts, W3C headers."""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import AsyncGenerator

import pytest

from model import telemetry
from model.telemetry.propagation import remote_context, traceresponse


def test_without_a_trace_nothing_is_made() -> None:
    assert telemetry.current() is None
    with telemetry.span("anything", {"a": 1}) as span:
        assert span is None
    assert telemetry.child("anything") is None
    telemetry.end(None)
    telemetry.annotate(None, {"a": 1})


def test_texts_follow_the_audit_setting() -> None:
    text = "hello there"
    digest = hashlib.sha256(text.encode()).hexdigest()
    assert telemetry.text_attributes("k", text, "full") == {"k": text, "k.chars": 11}
    assert telemetry.text_attributes("k", text, "hash") == {"k.sha256": digest, "k.chars": 11}
    assert telemetry.text_attributes("k", text, "redact") == {"k.chars": 11}
    with pytest.raises(ValueError, match="unknown text mode"):
        telemetry.text_attributes("k", text, "plain")  # type: ignore[arg-type]


def test_children_nest_and_errors_are_named_by_type(spans) -> None:
    tracer = telemetry.tracer_for(telemetry.Settings())
    root = telemetry.start(tracer, "root")
    with telemetry.within(root), pytest.raises(KeyError), telemetry.span("child"):
        raise KeyError("secret text")
    telemetry.end(root)
    child, parent = spans.get_finished_spans()
    assert child.parent.span_id == parent.context.span_id
    assert child.attributes["error.type"] == "KeyError" and "secret" not in str(child.status.description)
    assert telemetry.current() is None  # restored after the block


async def test_each_step_of_an_async_generator_runs_within_the_trace(spans) -> None:
    root = telemetry.start(telemetry.tracer_for(telemetry.Settings()), "root")
    seen: list[object] = []

    async def steps() -> AsyncGenerator[int, None]:
        for i in range(3):
            seen.append(telemetry.current())
            task = asyncio.ensure_future(asyncio.sleep(0, result=telemetry.current()))  # a task started in a step
            seen.append(await task)
            yield i

    got = [i async for i in telemetry.each_within(steps(), root)]
    assert got == [0, 1, 2] and seen == [root] * 6
    assert telemetry.current() is None  # never current between steps (the consumer's own context)
    telemetry.end(root)


def test_trace_context_headers(spans) -> None:
    parent = remote_context("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")
    assert parent is not None
    for bad in ("", "garbage", "00-00000000000000000000000000000000-00f067aa0ba902b7-01"):
        assert remote_context(bad) is None
    server = telemetry.start(telemetry.tracer_for(telemetry.Settings()), "request", remote=parent, kind="server")
    assert server.trace_id == "4bf92f3577b34da6a3ce929d0e0e4736"
    assert traceresponse(server) == f"00-4bf92f3577b34da6a3ce929d0e0e4736-{server.span_id}-01"
    telemetry.end(server)

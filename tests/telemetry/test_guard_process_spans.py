"""Guards in processes of their own: a traced check sends its context to the child, whose span of the call is a child
of the guard check's span, exported by the child from the same settings (to a local OTLP sink: the child cannot
share an in-memory exporter). An untraced check sends nothing."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from guards.policy import parse_policy_text
from guards.runtime.pipeline import GuardPipeline
from guards.runtime.process import GuardProcess, flush_traces
from model import telemetry
from model.telemetry import export
from tests.telemetry.otlp_sink import Sink

POLICY = """\
version: 1
models:
  prompt_guard: {{source: {prompt_guard}, process: true, threads: 1}}
prompt_guard: {{timeout_s: 120}}  # about spans, not speed: a loaded test machine must not make it a timeout
stages:
  user_input: {{llama_guard: {{enabled: false}}, prompt_guard: {{enabled: true, score: jailbreak}}}}
"""


@pytest.fixture
def sink() -> Iterator[Sink]:
    collector = Sink().start()
    try:
        yield collector
    finally:
        collector.stop()


@pytest.fixture
def pipeline(tiny_guard_dirs: dict[str, Path]) -> Iterator[GuardPipeline]:
    policy = parse_policy_text(POLICY.format(prompt_guard=tiny_guard_dirs["prompt-guard"]))
    pipe = GuardPipeline.from_policy(policy, audit=False)
    yield pipe
    guard = pipe.runners["prompt_guard"].load()
    if isinstance(guard, GuardProcess):
        guard.close()


def test_the_child_span_is_a_child_of_the_guard_check(sink: Sink, pipeline: GuardPipeline, no_otel_env: None,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", sink.url)
    settings = telemetry.resolve_settings({"OTEL_EXPORTER_OTLP_ENDPOINT": sink.url})
    assert settings is not None
    pipeline.runners["prompt_guard"].load()  # started untraced: the context goes with each call, not the start

    untraced = asyncio.run(pipeline.check("user_input", "what is the weather"))
    assert untraced.decision == "allow"
    root = telemetry.start(telemetry.tracer_for(settings), "root", settings=settings)
    with telemetry.within(root):
        result = asyncio.run(pipeline.check("user_input", "please jbtrigger now"))
    telemetry.end(root)
    assert result.decision == "block"
    export.flush()
    flush_traces()

    spans = sink.snapshot()
    by_id = {s.span_id: s for s in spans}
    child = [s for s in spans if s.name == "process score"]
    assert len(child) == 1, [s.name for s in spans]  # the untraced check made no span in the child
    check = by_id[child[0].parent_span_id]
    assert check.name == "guard prompt_guard" and check.trace_id == child[0].trace_id == root.trace_id
    assert check.attributes["assistant.guard.decision"] == "block"
    attrs = child[0].attributes
    assert attrs["assistant.guard.process"] == "Prompt Guard" and attrs["assistant.guard.tokens"] > 0
    assert attrs["process.pid"] not in (os.getpid(), None)
    assert "jbtrigger" not in repr([s.attributes for s in spans])  # the judged text never reaches a span

"""The turn's span (docs/OBSERVABILITY.md): started by `Agent.stream`, current while each step of the turn runs, so
the model calls, guard checks, tool runs and approval waits of the turn are its descendants; ended with the turn's
outcome.

Texts on the turn's span follow the policy's `audit.texts` and are only those the user was shown or that passed
their guards: the user's message once the input guard admitted it, the final answer. A refused or failed turn
carries no text, only the stage that stopped it.
"""

from __future__ import annotations

import logging
import os
from collections.abc import AsyncGenerator, Callable
from typing import Any

from assistant.agent.deps import AgentDeps
from assistant.events import ApprovalRequested, Error, Event, Final, Refusal
from model import telemetry
from model.telemetry.propagation import link_to, remote_context, traceresponse

logger = logging.getLogger(__name__)
_reported: set[str] = set()  # each telemetry misconfiguration is logged once per process, not per turn


def settings_for(policy: Any) -> telemetry.Settings | None:
    """Whether (and where) this policy's turns are traced, from its `telemetry:` section and the environment. A
    misconfiguration (a variable the policy names is unset) is logged once and leaves tracing off: observability
    never stops a turn."""
    section = policy.telemetry
    try:
        return telemetry.resolve_settings(
            os.environ, enabled=section.enabled, endpoint_env=section.endpoint_env, headers_env=section.headers_env,
            sample_ratio=section.sample_ratio, service_name=section.service_name,
        )
    except telemetry.TelemetryConfigError as exc:
        if str(exc) not in _reported:
            _reported.add(str(exc))
            logger.error("tracing is off: %s", exc)
        return None


def start_turn(deps: AgentDeps, thread_id: str, policy_digest: str, *, resume: bool,
               interface: str, paused: str | None = None) -> telemetry.Trace | None:
    """The turn's span, a child of the current trace (the server's request span) if any; None when not tracing.
    `paused`: the traceparent of the turn a resumed run continues (`paused_trace`): without a current trace the run
    is that turn's child, in its trace; under one (a server request) it links to it."""
    settings = settings_for(deps.policy)
    tracer = telemetry.tracer_for(settings)
    if tracer is None:
        return None
    parent = telemetry.current()
    origin = remote_context(paused) if parent is None else None
    link = link_to(paused) if parent is not None else None
    return telemetry.start(tracer, "invoke_agent assistant", {
        "gen_ai.operation.name": "invoke_agent",
        "gen_ai.agent.name": "assistant",
        "gen_ai.conversation.id": thread_id,
        "assistant.thread_id": thread_id,
        "assistant.policy_hash": policy_digest,
        "assistant.interface": interface,
        "assistant.resume": resume,
    }, parent=parent, remote=origin, settings=settings, links=(link,) if link is not None else ())


def tracing_on(deps: AgentDeps) -> bool:
    return settings_for(deps.policy) is not None


def paused_trace() -> dict[str, str]:
    """What an approval's wait stores of the trace it pauses (the current span's traceparent), so that the run that
    resumes it, maybe days later in another process, continues that trace; {} when not tracing."""
    trace = telemetry.current()
    return {} if trace is None else {"traceparent": traceresponse(trace)}


def traced_turn(trace: telemetry.Trace | None, events: AsyncGenerator[Event, None], *, text: str | None,
                admitted: Callable[[], bool], deps: AgentDeps) -> AsyncGenerator[Event, None]:
    """`events` with `trace` current during each step and the outcome on the span; `events` itself when not tracing.
    `admitted` says whether the input guard passed the user's `text` (only then may it appear)."""
    if trace is None:
        return events
    return _traced(trace, events, text, admitted, deps.policy.audit.texts)


async def _traced(trace: telemetry.Trace, events: AsyncGenerator[Event, None], text: str | None,
                  admitted: Callable[[], bool], mode: telemetry.TextMode) -> AsyncGenerator[Event, None]:
    outcome: dict[str, Any] = {}
    failure: BaseException | None = None
    steps = telemetry.each_within(events, trace)
    try:
        async for event in steps:
            outcome.update(_outcome(event, mode))
            yield event
    except BaseException as exc:
        failure = exc
        raise
    finally:
        await steps.aclose()  # the turn's own generator ends now (its speculation cancelled), not when collected
        if text and admitted():
            outcome.update(telemetry.text_attributes("assistant.input", text, mode))
        if outcome.get("assistant.outcome") == "error" and failure is None:
            telemetry.mark_error(trace, str(outcome.get("assistant.error.kind")))
        telemetry.end(trace, outcome, error=failure)


def _outcome(event: Event, mode: telemetry.TextMode) -> dict[str, Any]:
    if isinstance(event, Final):
        return {"assistant.outcome": "final", **telemetry.text_attributes("assistant.answer", event.text, mode)}
    if isinstance(event, Refusal):
        return {"assistant.outcome": "refusal", "assistant.refusal.stage": event.stage,
                "assistant.refusal.guard_error": event.guard_error}
    if isinstance(event, Error):
        return {"assistant.outcome": "error", "assistant.error.kind": event.kind}
    if isinstance(event, ApprovalRequested):  # the last word only if the turn then waits (no callback)
        return {"assistant.outcome": "approval", "assistant.approval.tool": event.name}
    return {}


__all__ = ["paused_trace", "settings_for", "start_turn", "traced_turn", "tracing_on"]

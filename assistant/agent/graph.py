"""The LangGraph graph and the Agent that turns a run of it into the one typed event stream.

    START -> input_guard -> model (generation, then the output guard on an answer) -> END
                              |  ^
                              v  |
                     review_calls -> approval -> execute (one call per pass, loops) -> model

Nodes route themselves with `Command(goto=...)`; events leave the nodes through LangGraph's custom stream and are
stamped here with the time since this stream began. An approval pauses the graph (`interrupt()`); the Agent asks
the injected callback, if any, and resumes with `Command(resume=decision)`; without one the stream ends after the
ApprovalRequested event, and `stream(resume=...)` continues the thread later, from any process sharing the database.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import AsyncIterator
from typing import Any

from assistant.agent.approval import ApproveCallback, Decision, ask
from assistant.agent.deps import AgentDeps
from assistant.agent.nodes import (
    APPROVAL,
    EXECUTE,
    INCOMING_KEY,
    INPUT_GUARD,
    MODEL,
    REVIEW,
    Incoming,
    make_input_guard,
    make_model,
)
from assistant.agent.speculation import SPECULATION_KEY, SpeculationSlot
from assistant.agent.state import AgentState
from assistant.agent.tool_nodes import make_approval, make_execute, make_review
from assistant.events import ApprovalRequested, Error, Event, Final
from guards.gate import policy_hash, record

logger = logging.getLogger(__name__)


class ThreadBusy(Exception):
    """The thread waits for an approval decision; resume it before sending a new message."""


def build_graph(deps: AgentDeps) -> Any:
    from langgraph.graph import START, StateGraph

    graph = StateGraph(AgentState)
    graph.add_node(INPUT_GUARD, make_input_guard(deps))
    graph.add_node(MODEL, make_model(deps))
    graph.add_node(REVIEW, make_review(deps))
    graph.add_node(APPROVAL, make_approval(deps))
    graph.add_node(EXECUTE, make_execute(deps))
    graph.add_edge(START, INPUT_GUARD)
    return graph


@dataclasses.dataclass(frozen=True)
class PendingApproval:
    thread_id: str
    request: ApprovalRequested


def compile_graph(deps: AgentDeps) -> Any:
    """The compiled graph without a checkpointer: compiling costs ~20 ms, so an Assistant does it once and each
    stream binds its own SQLite connection with `Agent(..., compiled=...)`."""
    return build_graph(deps).compile()


class Agent:
    def __init__(
        self, deps: AgentDeps, checkpointer: Any, *, compiled: Any | None = None, durability: str = "exit"
    ) -> None:
        # "exit": the thread is written when the run ends, at END or at an approval interrupt - the only points a
        # thread is resumed from (a crashed run is never continued: the next message starts a new turn), so the
        # per-node checkpoints LangGraph would otherwise write buy nothing but time.
        self.durability = durability
        self.deps = deps
        template = compiled if compiled is not None else compile_graph(deps)
        self.graph = template.copy({"checkpointer": checkpointer})

    @staticmethod
    def _config(thread_id: str) -> dict[str, Any]:
        return {"configurable": {"thread_id": thread_id}, "recursion_limit": 10_000}

    async def pending_approval(self, thread_id: str) -> PendingApproval | None:
        """The approval this thread waits for, if any (also after a restart)."""
        snapshot = await self.graph.aget_state(self._config(thread_id))
        for task in snapshot.tasks:
            for item in task.interrupts:
                return PendingApproval(thread_id, approval_event(item.value))
        return None

    async def state(self, thread_id: str) -> dict[str, Any]:
        snapshot = await self.graph.aget_state(self._config(thread_id))
        return dict(snapshot.values or {})

    async def stream(
        self,
        text: str | None,
        *,
        thread_id: str,
        approve: ApproveCallback | None = None,
        resume: Decision | None = None,
        interface: str = "api",
    ) -> AsyncIterator[Event]:
        """One turn (or the rest of a paused one, with `resume`) as events. The last event is Final, Refusal or
        Error, or ApprovalRequested when the turn waits for a decision and no `approve` callback was given.
        `interface` names who answers approvals in the audit log (api, cli, tui, server, ...)."""
        from langgraph.types import Command

        started = time.perf_counter()
        config = self._config(thread_id)
        record(self.deps.pipeline, "run_start", thread_id=thread_id, policy_hash=policy_hash(self.deps.policy),
               interface=interface, resume=resume is not None)  # fmt: skip

        def stamp(event: Event) -> Event:
            extra: dict[str, Any] = {"elapsed_ms": round((time.perf_counter() - started) * 1000, 3)}
            if isinstance(event, Final):
                extra["thread_id"] = thread_id
            return dataclasses.replace(event, **extra)

        pending = await self.pending_approval(thread_id)
        if resume is not None:
            if pending is None:
                raise ThreadBusy(f"thread {thread_id!r} does not wait for an approval; there is nothing to resume")
            self._record_decision(thread_id, pending.request, resume, interface)
            graph_input: Any = Command(resume=resume.to_resume())
        else:
            if pending is not None:
                raise ThreadBusy(
                    f"thread {thread_id!r} waits for a decision on the call to {pending.request.name}; "
                    "approve or deny it first"
                )
            limit = self.deps.policy.agent.max_input_chars
            if text is not None and len(text) > limit:  # refused before anything runs or is stored
                yield stamp(Error(kind="bad_input", message=f"the message has {len(text):,} characters; the policy "
                                  f"allows at most {limit:,} (agent.max_input_chars)"))  # fmt: skip
                return
            graph_input = {"turn": {}}
            config = {**config, "configurable": {**config["configurable"], INCOMING_KEY: Incoming(text or "")}}
        # A generation started ahead of the guards lives in this run only: whatever is left of it at the end (a
        # block, an error, a step limit) is cancelled, unread.
        slot = SpeculationSlot()
        config = {**config, "configurable": {**config["configurable"], SPECULATION_KEY: slot}}
        try:
            async for event in self._run(graph_input, config, stamp, approve, interface):
                yield event
        finally:
            await slot.discard()

    def _record_decision(self, thread_id: str, request: ApprovalRequested, decision: Decision, interface: str) -> None:
        kind = {"approve": "once", "approve_session": "session", "deny": "deny"}[decision.action]
        record(self.deps.pipeline, "approval_decision", thread_id=thread_id, text=decision.reason or None,
               tool=request.name, call_id=request.call_id, decision=kind, interface=interface,
               reason_shown=request.reason)  # fmt: skip

    async def _run(
        self, graph_input: Any, config: dict[str, Any], stamp: Any, approve: ApproveCallback | None, interface: str
    ) -> AsyncIterator[Event]:
        from langgraph.types import Command

        while True:
            interrupt_value = None
            try:
                async for mode, chunk in self.graph.astream(
                    graph_input, config, stream_mode=["custom", "updates"], durability=self.durability
                ):
                    if mode == "custom":
                        yield stamp(chunk)
                    elif "__interrupt__" in chunk:
                        interrupt_value = chunk["__interrupt__"][0].value
            except Exception as exc:  # a bug must still end the stream with a typed event, never a traceback
                logger.exception("internal error in the agent's graph")
                yield stamp(Error(kind="internal", message=f"{type(exc).__name__}: {exc}"))
                return
            if interrupt_value is None:
                return
            request = stamp(approval_event(interrupt_value))
            thread_id = config["configurable"]["thread_id"]
            record(self.deps.pipeline, "approval_request", thread_id=thread_id, tool=request.name,
                   call_id=request.call_id, reason=request.reason, interface=interface)  # fmt: skip
            yield request
            if approve is None:
                return
            decision = await ask(approve, request)  # type: ignore[arg-type]
            self._record_decision(thread_id, request, decision, interface)
            graph_input = Command(resume=decision.to_resume())


def approval_event(value: dict[str, Any]) -> ApprovalRequested:
    return ApprovalRequested(
        call_id=value["call_id"], name=value["name"], arguments=dict(value["arguments"]), reason=value["reason"]
    )

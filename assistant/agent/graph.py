"""The LangGraph graph and the Agent that turns a run of it into the one typed event stream.

    START -> input_guard -> model (generation, then the output guard on an answer) -> END
                              |  ^
                              v  |
                     review_calls -> approval -> execute (one call per pass, loops) -> model

`build_graph` is the one place a graph is built; a surface passes replacement nodes (`GraphNodes`: the server's
seeded entry and client-tool review). Nodes route with `Command(goto=...)` and declare their destinations in their
return annotations, which are the graph's edges. Each run gets one `TurnContext` (turn.py: the user's text, the
speculation slot, the dependencies) as LangGraph's run context; events leave the nodes through LangGraph's custom
stream and are stamped here with the time since this stream began.

An approval pauses the graph (`interrupt()`); the Agent asks the injected callback, if any, and resumes with
`Command(resume=decision)`; without one the stream ends after the ApprovalRequested event, and `stream(resume=...)`
continues the thread later, from any process sharing the database.

Decisions (`_decide`, for a callback's answer and a `resume` alike): a decision names the call it decides and must
be the call the thread waits for; it is taken atomically per thread - an in-process lock per thread for the whole
stream, and a claim in the store (assistant/storage.py) so one process of several wins - and a deny reason reaches
the model only if it passed the user_input guards, like any user text.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import time
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable
from dataclasses import dataclass
from typing import Any, Literal, Protocol, TypeVar

from langchain_core.runnables import RunnableConfig
from langgraph.checkpoint.base import BaseCheckpointSaver
from langgraph.graph import START, StateGraph
from langgraph.graph.state import CompiledStateGraph
from langgraph.runtime import Runtime
from langgraph.types import Command

from assistant.agent import nodes as agent_nodes
from assistant.agent import tool_nodes
from assistant.agent.approval import THREAD_LOCKS, ApproveCallback, Decision, StaleApproval, ThreadBusy, ask
from assistant.agent.deps import AgentDeps
from assistant.agent.routes import (
    APPROVAL,
    EXECUTE,
    INPUT_GUARD,
    MODEL,
    REVIEW,
    ToApproval,
    ToEnd,
    ToExecute,
    ToModel,
    ToReview,
)
from assistant.agent.state import AgentState
from assistant.agent.tracing import start_turn, traced_turn, tracing_on
from assistant.agent.turn import TurnContext, guard_context
from assistant.events import ApprovalRequested, Error, Event, Final, Notice, verdict_events
from assistant.images import ImagesRefused, refuse_images
from assistant.storage import claim_approval, release_approval
from guards.audit.log import arguments_text
from guards.runtime.gate import judge, policy_hash, record
from model.images import ImageData

logger = logging.getLogger(__name__)

__all__ = ["Agent", "GraphNodes", "PendingApproval", "StaleApproval", "ThreadBusy", "approval_event", "build_graph",
           "compile_graph"]
REASON_WITHHELD = "approval_reason_withheld"  # the Notice kind when a deny reason did not pass the guards


Graph = CompiledStateGraph[AgentState, TurnContext, AgentState, AgentState]
R = TypeVar("R", covariant=True)
E = TypeVar("E", bound=Event)


class Node(Protocol[R]):
    """A node: the state and the run's TurnContext (`runtime.context`) in, a Command to its destinations out."""

    def __call__(self, state: AgentState, runtime: Runtime[TurnContext]) -> Awaitable[R]: ...


class StateNode(Protocol[R]):
    """A node that reads the state only."""

    def __call__(self, state: AgentState) -> Awaitable[R]: ...


# Each node's type, with the destinations it declares: a replacement must declare the same ones.
EntryNode = Node[Command[Literal[ToModel, ToEnd]]]
ModelNode = Node[Command[Literal[ToModel, ToReview, ToEnd]]]
ReviewNode = Node[Command[Literal[ToApproval, ToExecute, ToEnd]]]
ApprovalNode = StateNode[Command[ToExecute]]
ExecuteNode = Node[Command[Literal[ToModel, ToExecute, ToEnd]]]


@dataclass(frozen=True)
class GraphNodes:
    """The graph's nodes: the agent's own unless a surface replaces one (the server: its seeded entry, its review
    that hands client tools back to the client)."""

    input_guard: EntryNode = agent_nodes.input_guard
    model: ModelNode = agent_nodes.model
    review_calls: ReviewNode = tool_nodes.review_calls
    approval: ApprovalNode = tool_nodes.approval
    execute: ExecuteNode = tool_nodes.execute


def build_graph(nodes: GraphNodes | None = None) -> StateGraph[AgentState, TurnContext, AgentState, AgentState]:
    """The agent's graph. Its only fixed edge is START -> input_guard; every other edge is a destination a node
    declares in its return annotation (`Command[Literal[...]]`, routes.py), which LangGraph reads here."""
    chosen = nodes or GraphNodes()
    graph = StateGraph(AgentState, context_schema=TurnContext)
    graph.add_node(INPUT_GUARD, chosen.input_guard)
    graph.add_node(MODEL, chosen.model)
    graph.add_node(REVIEW, chosen.review_calls)
    graph.add_node(APPROVAL, chosen.approval)
    graph.add_node(EXECUTE, chosen.execute)
    graph.add_edge(START, INPUT_GUARD)
    for name, spec in graph.nodes.items():
        if not spec.ends:  # LangGraph skips an annotation it cannot resolve: fail here, not with a missing edge
            raise TypeError(f"the {name} node declares no destinations: annotate its return as Command[Literal[...]]"
                            " with the types of routes.py, imported at the top of the node's module")
    return graph


class Stamp:
    """Stamps a stream's events with the time since it began, and its Final with the thread."""

    def __init__(self, thread_id: str) -> None:
        self.thread_id = thread_id
        self.started = time.perf_counter()

    def __call__(self, event: E) -> E:
        extra: dict[str, Any] = {"elapsed_ms": round((time.perf_counter() - self.started) * 1000, 3)}
        if isinstance(event, Final):
            extra["thread_id"] = self.thread_id
        return dataclasses.replace(event, **extra)


@dataclasses.dataclass(frozen=True)
class PendingApproval:
    thread_id: str
    request: ApprovalRequested
    checkpoint_id: str = ""  # the stored state that waits (with the call id: what a decision claims)
    traceparent: str | None = None  # the paused turn's span, when it was traced (assistant.agent.tracing)


def compile_graph(nodes: GraphNodes | None = None) -> Graph:
    """The compiled graph without a checkpointer: compiling costs ~20 ms, so an Assistant does it once and each
    stream binds its own SQLite connection with `Agent(..., compiled=...)`."""
    return build_graph(nodes).compile()


class Agent:
    def __init__(
        self, deps: AgentDeps, checkpointer: BaseCheckpointSaver[Any], *, compiled: Graph | None = None,
        durability: Literal["exit", "async", "sync"] = "exit",
    ) -> None:
        # "exit": the thread is written when the run ends, at END or at an approval interrupt - the only points a
        # thread is resumed from (a crashed run is never continued: the next message starts a new turn), so the
        # per-node checkpoints LangGraph would otherwise write buy nothing but time.
        self.durability = durability
        self.deps = deps
        self.checkpointer = checkpointer
        template = compiled if compiled is not None else compile_graph()
        self.graph = template.copy({"checkpointer": checkpointer})
        # The user's message as the input guard stored it (sealed with its judgement), seen in this run's updates:
        # a stopped run writes nothing, and `Assistant.keep_stopped` keeps this message, never an unjudged copy.
        self.admitted_input: dict[str, Any] | None = None

    @staticmethod
    def config(thread_id: str) -> RunnableConfig:
        return {"configurable": {"thread_id": thread_id}, "recursion_limit": 10_000}

    async def pending_approval(self, thread_id: str) -> PendingApproval | None:
        """The approval this thread waits for, if any (also after a restart)."""
        snapshot = await self.graph.aget_state(self.config(thread_id))
        for task in snapshot.tasks:
            for item in task.interrupts:
                checkpoint_id = str(((snapshot.config or {}).get("configurable") or {}).get("checkpoint_id") or "")
                return PendingApproval(thread_id, approval_event(item.value), checkpoint_id,
                                       item.value.get("traceparent"))
        return None

    async def state(self, thread_id: str) -> dict[str, Any]:
        snapshot = await self.graph.aget_state(self.config(thread_id))
        return dict(snapshot.values or {})

    async def stream(
        self,
        text: str | None,
        *,
        thread_id: str,
        approve: ApproveCallback | None = None,
        resume: Decision | None = None,
        interface: str = "api",
        images: tuple[ImageData, ...] = (),
    ) -> AsyncIterator[Event]:
        """One turn (or the rest of a paused one, with `resume`) as events. The last event is Final, Refusal or
        Error, or ApprovalRequested when the turn waits for a decision and no `approve` callback was given.
        `resume` must name the call it decides (`Decision.call_id`, the pending ApprovalRequested's): a decision for
        any other call raises StaleApproval. `interface` names who answers approvals in the audit log (api, cli,
        tui, server, ...). `images` (checked by model.images.read_image) are judged with `text` and go with it."""
        if resume is not None and not resume.call_id:
            raise ValueError(
                "a decision that resumes a thread must name the call it decides: Decision(..., call_id=request.call_id)"
                " or decision.for_call(request.call_id), with the ApprovalRequested that was shown"
            )
        stamp = Stamp(thread_id)
        digest = policy_hash(self.deps.policy)
        record(self.deps.pipeline, "run_start", thread_id=thread_id, policy_hash=digest, interface=interface,
               resume=resume is not None)
        paused = None
        if resume is not None and tracing_on(self.deps):  # the paused turn's trace, continued (read only if traced)
            waiting = await self.pending_approval(thread_id)
            paused = waiting.traceparent if waiting is not None else None
        turn = start_turn(self.deps, thread_id, digest, resume=resume is not None, interface=interface,
                          paused=paused)
        # From reading the pending approval until the run has written the thread: one stream per thread here, and a
        # claim in the store per decision against other processes (released at the end, after the write).
        claims: list[tuple[str, str, str]] = []
        async with THREAD_LOCKS.hold(thread_id):
            try:
                locked = self._stream_locked(text, thread_id, approve, resume, interface, stamp, claims, images)
                before = self.admitted_input  # the input guard of this run stores a new one when it passes
                traced = traced_turn(turn, locked, text=text, deps=self.deps,
                                     admitted=lambda: self.admitted_input not in (None, before))
                async with contextlib.aclosing(traced) as events:  # the turn's span ends with the stream
                    async for event in events:
                        yield event
            finally:
                await self._release(claims)

    async def _stream_locked(
        self, text: str | None, thread_id: str, approve: ApproveCallback | None, resume: Decision | None,
        interface: str, stamp: Stamp, claims: list[tuple[str, str, str]], images: tuple[ImageData, ...] = (),
    ) -> AsyncGenerator[Event, None]:
        pending = await self.pending_approval(thread_id)
        if resume is not None:
            if pending is None:
                raise StaleApproval(f"thread {thread_id!r} does not wait for an approval; there is nothing to resume")
            decision, events = await self._decide(thread_id, pending.request, resume, interface, claims, pending)
            for event in events:
                yield stamp(event)
            graph_input: Command[Any] | AgentState = Command(resume=decision.to_resume())
        else:
            if pending is not None:
                raise ThreadBusy(
                    f"thread {thread_id!r} waits for a decision on the call to {pending.request.name}; "
                    "approve or deny it first"
                )
            limit = self.deps.policy.agent.max_input_chars
            if text is not None and len(text) > limit:  # refused before anything runs or is stored
                yield stamp(Error(kind="bad_input", message=f"the message has {len(text):,} characters; the policy "
                                  f"allows at most {limit:,} (agent.max_input_chars)"))
                return
            try:  # every surface checked already; the agent holds the rule too, before anything runs or is stored
                refuse_images(self.deps.policy, self.deps.pipeline, self.deps.backend, images)
            except ImagesRefused as exc:
                yield stamp(Error(kind="bad_input", message=str(exc)))
                return
            graph_input = {"turn": {}}
        # The run's context, built once: the user's text reaches the input guard as `runtime.context.text`, never
        # through the checkpointed state. A generation started ahead of the guards lives in this run only:
        # whatever is left of it at the end (a block, an error, a step limit) is cancelled, unread.
        context = TurnContext(self.deps, thread_id, text=text or "", images=images if resume is None else ())
        try:
            async for event in self._run(graph_input, context, stamp, approve, interface, claims):
                yield event
        finally:
            await context.speculation.discard()

    async def _decide(
        self, thread_id: str, shown: ApprovalRequested, decision: Decision, interface: str,
        claims: list[tuple[str, str, str]], pending: PendingApproval | None = None,
    ) -> tuple[Decision, list[Event]]:
        """Take `decision` on the call `shown` to a human: bound to that call, claimed so that no other decider (in
        any process) resumes the same wait, its deny reason judged as user text. The decision to resume with, and the
        events to show (the reason's verdicts, a notice when it was withheld)."""
        if not decision.call_id:
            decision = decision.for_call(shown.call_id)  # a callback's answer is about the request it was shown
        if pending is None and decision.call_id != shown.call_id:  # (a resume: `_claim` compares with the wait)
            raise StaleApproval(
                f"the decision names call {decision.call_id!r}, but the call shown for approval was "
                f"{shown.call_id!r} ({shown.name}); a decision applies only to the call it was made on"
            )
        await self._claim(thread_id, decision.call_id, claims, pending)
        decision, events, withheld = await self._screen_reason(thread_id, decision)
        kind = {"approve": "once", "approve_session": "session", "deny": "deny"}[decision.action]
        record(self.deps.pipeline, "approval_decision", thread_id=thread_id, text=withheld or decision.reason or None,
               tool=shown.name, call_id=shown.call_id, arguments=arguments_text(shown.arguments), decision=kind,
               interface=interface, reason_shown=shown.reason, reason_withheld=withheld is not None)
        return decision, events

    async def _claim(self, thread_id: str, call_id: str, claims: list[tuple[str, str, str]],
                     pending: PendingApproval | None) -> None:
        """The thread must wait for `call_id` now; claim that wait in the store, then check it is still the one
        waiting (a decider that read it before another decider's run wrote the thread must not resume the next
        wait). StaleApproval otherwise."""
        saver = self.checkpointer
        current = pending or await self.pending_approval(thread_id)
        if current is None or current.request.call_id != call_id:
            now = f"the call to {current.request.name} ({current.request.call_id!r})" if current else "no call"
            raise StaleApproval(f"thread {thread_id!r} no longer waits for call {call_id!r} (it waits for {now}): "
                                "it was decided already, or the decision is stale")
        key = (thread_id, current.checkpoint_id, call_id)
        if not await claim_approval(saver, *key):
            raise StaleApproval(f"call {call_id!r} of thread {thread_id!r} is being decided right now by another "
                                "request; this decision was not applied")
        claims.append(key)
        again = await self.pending_approval(thread_id)
        if again is None or (again.checkpoint_id, again.request.call_id) != (current.checkpoint_id, call_id):
            claims.remove(key)
            await release_approval(saver, *key)
            raise StaleApproval(f"call {call_id!r} of thread {thread_id!r} was decided by another request meanwhile; "
                                "this decision was not applied")

    async def _release(self, claims: list[tuple[str, str, str]]) -> None:
        for key in claims:  # the run ended: its state is written (or it failed, and the wait may be decided again)
            try:
                await release_approval(self.checkpointer, *key)
            except Exception:  # a claim left behind expires (storage.CLAIM_STALE_S); the turn's outcome stands
                logger.exception("could not release the approval claim %s", key)
        claims.clear()

    async def _screen_reason(self, thread_id: str, decision: Decision) -> tuple[Decision, list[Event], str | None]:
        """A deny reason is user text the model will read: it passes the user_input guards first, in the thread's
        context. When it does not (block or guard error), the model gets the denial without it and a notice says so.
        (decision, events, the withheld reason or None)."""
        if decision.action != "deny" or not decision.reason:
            return decision, [], None
        events: list[Event] = []
        messages = list((await self.state(thread_id)).get("messages") or [])
        # outside a run: its verdicts are collected here and stamped by the stream
        judgement = await judge(self.deps.pipeline, "user_text", decision.reason, conversation=guard_context(messages),
                                thread_id=thread_id, on_result=lambda r: events.extend(verdict_events(r)))
        if judgement.passed:
            return decision, events, None
        why = "a safety check failed" if judgement.outcome == "error" else f"the {judgement.stage} stage blocked it"
        events.append(Notice(kind=REASON_WITHHELD, message=f"The reason given with the denial was not passed to the "
                             f"assistant ({why}); it was told only that the call was denied."))
        return dataclasses.replace(decision, reason=""), events, decision.reason

    async def _run(
        self, graph_input: Command[Any] | AgentState, context: TurnContext, stamp: Stamp,
        approve: ApproveCallback | None, interface: str, claims: list[tuple[str, str, str]],
    ) -> AsyncIterator[Event]:
        config = self.config(context.thread_id)
        while True:
            interrupt_value = None
            chunk: Any  # an event the nodes emitted ("custom"), or a node's state update ("updates")
            try:
                async for mode, chunk in self.graph.astream(
                    graph_input, config, context=context, stream_mode=["custom", "updates"], durability=self.durability
                ):
                    if mode == "custom":
                        yield stamp(chunk)
                    elif "__interrupt__" in chunk:
                        interrupt_value = chunk["__interrupt__"][0].value
                    elif (update := chunk.get(INPUT_GUARD)) and update.get("messages"):
                        self.admitted_input = update["messages"][-1]
            except Exception as exc:  # a bug must still end the stream with a typed event, never a traceback
                logger.exception("internal error in the agent's graph")
                yield stamp(Error(kind="internal", message=f"{type(exc).__name__}: {exc}"))
                return
            if interrupt_value is None:
                return
            request = stamp(approval_event(interrupt_value))
            thread_id = context.thread_id
            record(self.deps.pipeline, "approval_request", thread_id=thread_id, tool=request.name,
                   call_id=request.call_id, arguments=arguments_text(request.arguments), reason=request.reason,
                   interface=interface)
            yield request
            if approve is None:
                return
            answer = await ask(approve, request)
            decision, events = await self._decide(thread_id, request, answer, interface, claims)
            for event in events:
                yield stamp(event)
            graph_input = Command(resume=decision.to_resume())


def approval_event(value: dict[str, Any]) -> ApprovalRequested:
    return ApprovalRequested(
        call_id=value["call_id"], name=value["name"], arguments=dict(value["arguments"]), reason=value["reason"]
    )

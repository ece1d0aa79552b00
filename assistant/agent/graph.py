"""The LangGraph graph and the Agent that turns a run of it into the one typed event stream.

    START -> input_guard -> model (generation, then the output guard on an answer) -> END
                              |  ^
                              v  |
                     review_calls -> approval -> execute (one call per pass, loops) -> model

Nodes route themselves with `Command(goto=...)`; events leave the nodes through LangGraph's custom stream and are
stamped here with the time since this stream began. An approval pauses the graph (`interrupt()`); the Agent asks
the injected callback, if any, and resumes with `Command(resume=decision)`; without one the stream ends after the
ApprovalRequested event, and `stream(resume=...)` continues the thread later, from any process sharing the database.

Decisions (`_decide`, for a callback's answer and a `resume` alike): a decision names the call it decides and must
be the call the thread waits for; it is taken atomically per thread - an in-process lock per thread for the whole
stream, and a claim in the store (assistant/storage.py) so one process of several wins - and a deny reason reaches
the model only if it passed the user_input guards, like any user text.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import time
import weakref
from collections.abc import AsyncIterator
from typing import Any

from assistant.agent.approval import ApproveCallback, Decision, StaleApproval, ThreadBusy, ask
from assistant.agent.deps import AgentDeps
from assistant.agent.nodes import (
    APPROVAL,
    EXECUTE,
    INCOMING_KEY,
    INPUT_GUARD,
    MODEL,
    REVIEW,
    Incoming,
    guard_context,
    make_input_guard,
    make_model,
)
from assistant.agent.speculation import SPECULATION_KEY, SpeculationSlot
from assistant.agent.state import AgentState
from assistant.agent.tool_nodes import make_approval, make_execute, make_review
from assistant.events import ApprovalRequested, Error, Event, Final, GuardVerdict, Notice
from guards.audit import arguments_text
from guards.gate import judge, policy_hash, record

logger = logging.getLogger(__name__)

__all__ = ["Agent", "PendingApproval", "StaleApproval", "ThreadBusy", "approval_event", "build_graph", "compile_graph"]
REASON_WITHHELD = "approval_reason_withheld"  # the Notice kind when a deny reason did not pass the guards


class _ThreadLocks:
    """One asyncio lock per thread id (per event loop: `Assistant.run` starts a loop per call), held by a stream from
    reading the thread's pending approval until its run has written the thread: two decisions, or a decision and a
    message, on one thread never interleave in this process. Entries go when no stream holds or waits for them."""

    def __init__(self) -> None:
        self._loops: weakref.WeakKeyDictionary[Any, dict[str, list[Any]]] = weakref.WeakKeyDictionary()

    @contextlib.asynccontextmanager
    async def hold(self, thread_id: str) -> AsyncIterator[None]:
        locks = self._loops.setdefault(asyncio.get_running_loop(), {})
        entry = locks.setdefault(thread_id, [asyncio.Lock(), 0])
        entry[1] += 1
        try:
            async with entry[0]:
                yield
        finally:
            entry[1] -= 1
            if entry[1] == 0:
                locks.pop(thread_id, None)


THREAD_LOCKS = _ThreadLocks()


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
    checkpoint_id: str = ""  # the stored state that waits (with the call id: what a decision claims)


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
        # The user's message as the input guard stored it (sealed with its judgement), seen in this run's updates:
        # a stopped run writes nothing, and `Assistant.keep_stopped` keeps this message, never an unjudged copy.
        self.admitted_input: dict[str, Any] | None = None

    @staticmethod
    def _config(thread_id: str) -> dict[str, Any]:
        return {"configurable": {"thread_id": thread_id}, "recursion_limit": 10_000}

    async def pending_approval(self, thread_id: str) -> PendingApproval | None:
        """The approval this thread waits for, if any (also after a restart)."""
        snapshot = await self.graph.aget_state(self._config(thread_id))
        for task in snapshot.tasks:
            for item in task.interrupts:
                checkpoint_id = str(((snapshot.config or {}).get("configurable") or {}).get("checkpoint_id") or "")
                return PendingApproval(thread_id, approval_event(item.value), checkpoint_id)
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
        `resume` must name the call it decides (`Decision.call_id`, the pending ApprovalRequested's): a decision for
        any other call raises StaleApproval. `interface` names who answers approvals in the audit log (api, cli,
        tui, server, ...)."""
        if resume is not None and not resume.call_id:
            raise ValueError(
                "a decision that resumes a thread must name the call it decides: Decision(..., call_id=request.call_id)"
                " or decision.for_call(request.call_id), with the ApprovalRequested that was shown"
            )
        started = time.perf_counter()
        record(self.deps.pipeline, "run_start", thread_id=thread_id, policy_hash=policy_hash(self.deps.policy),
               interface=interface, resume=resume is not None)  # fmt: skip

        def stamp(event: Event) -> Event:
            extra: dict[str, Any] = {"elapsed_ms": round((time.perf_counter() - started) * 1000, 3)}
            if isinstance(event, Final):
                extra["thread_id"] = thread_id
            return dataclasses.replace(event, **extra)

        # From reading the pending approval until the run has written the thread: one stream per thread here, and a
        # claim in the store per decision against other processes (released at the end, after the write).
        claims: list[tuple[str, str, str]] = []
        async with THREAD_LOCKS.hold(thread_id):
            try:
                async for event in self._stream_locked(text, thread_id, approve, resume, interface, stamp, claims):
                    yield event
            finally:
                await self._release(claims)

    async def _stream_locked(
        self, text: str | None, thread_id: str, approve: ApproveCallback | None, resume: Decision | None,
        interface: str, stamp: Any, claims: list[tuple[str, str, str]],
    ) -> AsyncIterator[Event]:  # fmt: skip
        from langgraph.types import Command

        config = self._config(thread_id)
        pending = await self.pending_approval(thread_id)
        if resume is not None:
            if pending is None:
                raise StaleApproval(f"thread {thread_id!r} does not wait for an approval; there is nothing to resume")
            decision, events = await self._decide(thread_id, pending.request, resume, interface, claims, pending)
            for event in events:
                yield stamp(event)
            graph_input: Any = Command(resume=decision.to_resume())
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
            async for event in self._run(graph_input, config, stamp, approve, interface, claims):
                yield event
        finally:
            await slot.discard()

    async def _decide(
        self, thread_id: str, shown: ApprovalRequested, decision: Decision, interface: str,
        claims: list[tuple[str, str, str]], pending: PendingApproval | None = None,
    ) -> tuple[Decision, list[Event]]:  # fmt: skip
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
               interface=interface, reason_shown=shown.reason, reason_withheld=withheld is not None)  # fmt: skip
        return decision, events

    async def _claim(self, thread_id: str, call_id: str, claims: list[tuple[str, str, str]],
                     pending: PendingApproval | None) -> None:  # fmt: skip
        """The thread must wait for `call_id` now; claim that wait in the store, then check it is still the one
        waiting (a decider that read it before another decider's run wrote the thread must not resume the next
        wait). StaleApproval otherwise."""
        from assistant.storage import claim_approval, release_approval

        saver = self.graph.checkpointer
        current = pending or await self.pending_approval(thread_id)
        if current is None or current.request.call_id != call_id:
            now = f"the call to {current.request.name} ({current.request.call_id!r})" if current else "no call"
            raise StaleApproval(f"thread {thread_id!r} no longer waits for call {call_id!r} (it waits for {now}): "
                                "it was decided already, or the decision is stale")  # fmt: skip
        key = (thread_id, current.checkpoint_id, call_id)
        if not await claim_approval(saver, *key):
            raise StaleApproval(f"call {call_id!r} of thread {thread_id!r} is being decided right now by another "
                                "request; this decision was not applied")  # fmt: skip
        claims.append(key)
        again = await self.pending_approval(thread_id)
        if again is None or (again.checkpoint_id, again.request.call_id) != (current.checkpoint_id, call_id):
            claims.remove(key)
            await release_approval(saver, *key)
            raise StaleApproval(f"call {call_id!r} of thread {thread_id!r} was decided by another request meanwhile; "
                                "this decision was not applied")  # fmt: skip

    async def _release(self, claims: list[tuple[str, str, str]]) -> None:
        from assistant.storage import release_approval

        for key in claims:  # the run ended: its state is written (or it failed, and the wait may be decided again)
            try:
                await release_approval(self.graph.checkpointer, *key)
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

        def collect(result: Any) -> None:
            for v in result.verdicts:
                events.append(GuardVerdict(stage=v.stage, guard=v.guard, decision=v.decision, score=v.score,
                                           categories=tuple(v.categories), reasons=tuple(v.reasons),
                                           latency_ms=v.latency_ms, error=v.error))  # fmt: skip

        messages = list((await self.state(thread_id)).get("messages") or [])
        judgement = await judge(self.deps.pipeline, "user_text", decision.reason, conversation=guard_context(messages),
                                thread_id=thread_id, on_result=collect)  # fmt: skip
        if judgement.passed:
            return decision, events, None
        why = "a safety check failed" if judgement.outcome == "error" else f"the {judgement.stage} stage blocked it"
        events.append(Notice(kind=REASON_WITHHELD, message=f"The reason given with the denial was not passed to the "
                             f"assistant ({why}); it was told only that the call was denied."))  # fmt: skip
        return dataclasses.replace(decision, reason=""), events, decision.reason

    async def _run(
        self, graph_input: Any, config: dict[str, Any], stamp: Any, approve: ApproveCallback | None, interface: str,
        claims: list[tuple[str, str, str]],
    ) -> AsyncIterator[Event]:  # fmt: skip
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
                    elif (update := chunk.get(INPUT_GUARD)) and update.get("messages"):
                        self.admitted_input = update["messages"][-1]
            except Exception as exc:  # a bug must still end the stream with a typed event, never a traceback
                logger.exception("internal error in the agent's graph")
                yield stamp(Error(kind="internal", message=f"{type(exc).__name__}: {exc}"))
                return
            if interrupt_value is None:
                return
            request = stamp(approval_event(interrupt_value))
            thread_id = config["configurable"]["thread_id"]
            record(self.deps.pipeline, "approval_request", thread_id=thread_id, tool=request.name,
                   call_id=request.call_id, arguments=arguments_text(request.arguments), reason=request.reason,
                   interface=interface)  # fmt: skip
            yield request
            if approve is None:
                return
            answer = await ask(approve, request)  # type: ignore[arg-type]
            decision, events = await self._decide(thread_id, request, answer, interface, claims)
            for event in events:
                yield stamp(event)
            graph_input = Command(resume=decision.to_resume())


def approval_event(value: dict[str, Any]) -> ApprovalRequested:
    return ApprovalRequested(
        call_id=value["call_id"], name=value["name"], arguments=dict(value["arguments"]), reason=value["reason"]
    )

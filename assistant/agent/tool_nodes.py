"""The tool half of the graph, on the one tool path (`tools.executor.ToolPath`): review each proposed call, ask a
human where needed, execute.

Review and execution are separate nodes, and approval sits between them in a node without side effects, because
LangGraph re-runs an interrupted node from its start on resume: re-running `approval` only replays the recorded
answers, and `execute` never re-runs for an approval. `execute` runs one call per pass and records its id in the
state, so a resumed run never runs a call twice (the state is written when a run ends or pauses: a run that crashed
is not continued, see graph.py).
"""

from __future__ import annotations

from typing import Any

from langchain_core.runnables import RunnableConfig
from langgraph.types import Command, interrupt

from assistant.agent.approval import coerce_decision, denial_notice
from assistant.agent.deps import AgentDeps
from assistant.agent.nodes import (
    APPROVAL,
    EXECUTE,
    MODEL,
    after_failure,
    emit,
    emit_verdicts,
    guard_context,
    refuse,
    speculate,
    thread_of,
)
from assistant.agent.provenance import seal, seal_trusted
from assistant.agent.state import AgentState, untrusted_in_view
from assistant.events import ToolCallProposed, ToolResult
from model.messages import ToolCall
from tools.rules import TurnState


def as_call(call: dict[str, Any]) -> ToolCall:
    return ToolCall(call["name"], dict(call["arguments"]), call["call_id"])


def make_review(deps: AgentDeps):
    async def review_calls(state: AgentState, config: RunnableConfig) -> Command:
        # Guards first, for every call: a call whose text a guard blocks never appears in any event (not even as
        # ToolCallProposed) and is never run. Then the policy's rules decide run / ask / deny.
        turn = dict(state["turn"])
        messages = list(state["messages"])
        pending = [dict(c) for c in turn["pending"]]
        rules_state = TurnState(untrusted_content=untrusted_in_view(messages, state.get("dropped", 0)))
        for call in pending:
            if call["status"] != "proposed":
                continue
            review = await deps.tool_path.review(as_call(call), rules_state, conversation=guard_context(messages),
                                                 thread_id=thread_of(config), on_result=emit_verdicts)  # fmt: skip
            if review.action == "block":
                return refuse(deps, {**state, "turn": turn}, review.judgement.stage, review.judgement,
                              thread_id=thread_of(config))  # never executed  # fmt: skip
            emit(ToolCallProposed(call_id=call["call_id"], name=call["name"], arguments=dict(call["arguments"])))
            if review.action == "invalid":
                call.update(status="failed", notice=f"Error: {review.reason}.")
            elif review.action == "deny":
                call.update(status="denied", notice=f"The policy denied the call to {call['name']}: {review.reason}")
            elif review.action == "ask":
                call.update(status="ask", reason=review.reason, waivable=review.session_waivable)
            else:
                call["status"] = "run"
        turn["pending"] = pending
        goto = APPROVAL if any(c["status"] == "ask" for c in pending) else EXECUTE
        return Command(update={"turn": turn}, goto=goto)

    return review_calls


def make_approval(deps: AgentDeps):
    async def approval(state: AgentState) -> Command:
        # No side effects before the last interrupt(): this node re-runs from the top on every resume.
        turn = dict(state["turn"])
        pending = [dict(c) for c in turn["pending"]]
        session = list(state.get("session_approved") or ())
        for call in pending:
            if call["status"] != "ask":
                continue
            # "Approve for the session" stands in only for the policy's approval_required: never for the
            # untrusted-content rule, never for a guard's `ask` (review sets `waivable`).
            if call["name"] in session and call.get("waivable"):
                call["status"] = "run"
                continue
            answer = interrupt({
                "call_id": call["call_id"], "name": call["name"], "arguments": call["arguments"],
                "reason": call.get("reason", ""),
            })  # fmt: skip
            decision = coerce_decision(answer)
            if decision.call_id and decision.call_id != call["call_id"]:  # a decision on another call: never runs
                decision = coerce_decision(False)  # this one (the Agent refuses such a resume before it gets here)
            if decision.action == "deny":
                call.update(status="denied", notice=denial_notice(call["name"], decision))
                continue
            if decision.action == "approve_session" and call["name"] not in session:
                session.append(call["name"])
            call["status"] = "run"
        turn["pending"] = pending
        return Command(update={"turn": turn, "session_approved": session}, goto=EXECUTE)

    return approval


def make_execute(deps: AgentDeps):
    async def execute(state: AgentState, config: RunnableConfig) -> Command:
        turn = dict(state["turn"])
        messages = list(state["messages"])
        executed = list(turn.get("executed") or ())
        todo = [c for c in turn["pending"] if c["call_id"] not in executed]
        if not todo:
            return Command(update={"turn": {**turn, "pending": []}}, goto=MODEL)
        call = todo[0]
        turn["executed"] = [*executed, call["call_id"]]
        last = len(todo) == 1
        thread_id = thread_of(config)
        if call["status"] != "run":  # denied or failed before running: the model reads why
            notice = call.get("notice") or "The call was not run."
            emit(ToolResult(call_id=call["call_id"], name=call["name"], ok=False, output="", error=notice))
            # the agent's own words around parts already judged (the policy's reason, a judged denial reason)
            messages.append(seal_trusted({"role": "tool", "content": notice, "tool_name": call["name"], "notice": True},
                                         "agent"))  # fmt: skip
            failed = call["status"] == "failed"
            return next_step(deps, state, turn, messages, last, notice if failed else None, thread_id)

        async def run_ahead(text: str) -> None:  # the model is next: let it start while the guards read the result
            if last:
                following = [*messages, {"role": "tool", "content": text, "tool_name": call["name"]}]
                await speculate(deps, config, following, dropped=state.get("dropped", 0), turn_start=turn["start"])

        ran = await deps.tool_path.run(as_call(call), conversation=guard_context(messages), thread_id=thread_id,
                                       on_result=emit_verdicts, before_judging=run_ahead)  # fmt: skip
        if ran.guard_error:
            return refuse(deps, {**state, "turn": turn}, ran.judgement.stage, ran.judgement, thread_id=thread_id)
        failed = not ran.output.ok and not ran.withheld
        # Shown = judged: a failed tool's error is shown as the judged text (cut to tools.max_result_chars), never
        # the tool's whole, unjudged error.
        emit(ToolResult(call_id=call["call_id"], name=call["name"], ok=ran.output.ok and not ran.withheld,
                        output=ran.text, error=ran.text if failed else None,
                        limits_hit=ran.limits_hit, blocked=ran.withheld))  # fmt: skip
        message = {"role": "tool", "content": ran.text, "tool_name": call["name"]}
        if ran.withheld:  # the policy's notice in place of the result
            messages.append(seal_trusted({**message, "notice": True}, "policy"))
        else:
            messages.append(seal(message, ran.judgement))
        return next_step(deps, state, turn, messages, last, (ran.output.error or "tool error") if failed else None,
                         thread_id)  # fmt: skip

    return execute


def next_step(deps: AgentDeps, state: AgentState, turn: dict[str, Any], messages: list, last: bool,
              failure: str | None, thread_id: str | None) -> Command:  # fmt: skip
    """After one call: count a failure (the retry limit may end the turn), then the next call or the model (straight
    back after the last call: one superstep fewer per step)."""
    update = {"messages": messages}
    if failure is not None and (ended := after_failure(deps, state, turn, update, failure, thread_id)):
        return ended
    if last:
        turn["pending"] = []
    return Command(update={**update, "turn": turn}, goto=MODEL if last else EXECUTE)

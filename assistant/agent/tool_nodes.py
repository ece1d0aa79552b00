"""The tool half of the graph, on the one tool path (`tools.executor.ToolPath`): review each proposed call, ask a
human where needed, execute.

Review and execution are separate nodes, and approval sits between them in a node without side effects, because
LangGraph re-runs an interrupted node from its start on resume: re-running `approval` only replays the recorded
answers, and `execute` never re-runs for an approval. `execute` runs one call per pass and records its id in the
state, so a resumed run never runs a call twice (the state is written when a run ends or pauses: a run that crashed
is not continued, see graph.py).
"""

from __future__ import annotations

from typing import Literal

from langgraph.runtime import Runtime
from langgraph.types import Command, interrupt

from assistant.agent.approval import coerce_decision, denial_notice
from assistant.agent.nodes import after_failure, refuse, speculate
from assistant.agent.provenance import seal, seal_trusted
from assistant.agent.routes import APPROVAL, END, EXECUTE, MODEL, ToApproval, ToEnd, ToExecute, ToModel
from assistant.agent.state import AgentState, CallDict, MessageDict, TurnData, untrusted_in_view
from assistant.agent.tracing import paused_trace
from assistant.agent.turn import TurnContext
from assistant.events import ToolCallProposed, ToolResult
from model.messages import ToolCall
from tools.rules import TurnState


def as_call(call: CallDict) -> ToolCall:
    return ToolCall(call["name"], dict(call["arguments"]), call["call_id"])


async def review_calls(
    state: AgentState, runtime: Runtime[TurnContext]
) -> Command[Literal[ToApproval, ToExecute, ToEnd]]:
    # Guards first, for every call: a call whose text a guard blocks never appears in any event (not even as
    # ToolCallProposed) and is never run. Then the policy's rules decide run / ask / deny.
    ctx = runtime.context
    turn = state["turn"].copy()
    messages = list(state["messages"])
    pending = [dict(c) for c in turn["pending"]]
    rules_state = TurnState(untrusted_content=untrusted_in_view(messages, state.get("dropped", 0)))
    for call in pending:
        if call["status"] != "proposed":
            continue
        review = await ctx.review(as_call(call), rules_state, messages)
        if review.action == "block":
            assert review.judgement is not None  # a guard blocked it: its judgement says which
            update = refuse(ctx, {**state, "turn": turn}, review.judgement.stage, review.judgement)
            return Command(update=update, goto=END)  # never executed
        ctx.emit(ToolCallProposed(call_id=call["call_id"], name=call["name"], arguments=dict(call["arguments"])))
        if review.action == "invalid":
            call.update(status="failed", notice=f"Error: {review.reason}.")
        elif review.action == "deny":
            call.update(status="denied", notice=f"The policy denied the call to {call['name']}: {review.reason}")
        elif review.action == "ask":
            call.update(status="ask", reason=review.reason, waivable=review.session_waivable)
        else:
            call["status"] = "run"
    turn["pending"] = pending
    if any(c["status"] == "ask" for c in pending):
        return Command(update={"turn": turn}, goto=APPROVAL)
    return Command(update={"turn": turn}, goto=EXECUTE)


async def approval(state: AgentState) -> Command[ToExecute]:
    # No side effects before the last interrupt(): this node re-runs from the top on every resume.
    turn = state["turn"].copy()
    pending = [dict(c) for c in turn["pending"]]
    session = list(state.get("session_approved") or ())
    for call in pending:
        if call["status"] != "ask":
            continue
        # "Approve for the session" stands in only for the policy's approval_required: never for the
        # untrusted-content rule, never for a guard's `ask` (review sets `waivable`).
        if call["name"] in session and call.get("waivable"):
            call.update(status="run", approval="session")  # `approval`: for the run's span
            continue
        answer = interrupt({
            "call_id": call["call_id"], "name": call["name"], "arguments": call["arguments"],
            "reason": call.get("reason", ""), **paused_trace(),  # a later `resume` continues this trace
        })
        decision = coerce_decision(answer)
        if decision.call_id and decision.call_id != call["call_id"]:  # a decision on another call: never runs
            decision = coerce_decision(False)  # this one (the Agent refuses such a resume before it gets here)
        if decision.action == "deny":
            call.update(status="denied", notice=denial_notice(call["name"], decision))
            continue
        if decision.action == "approve_session" and call["name"] not in session:
            session.append(call["name"])
        call.update(status="run", approval=decision.action)
    turn["pending"] = pending
    return Command(update={"turn": turn, "session_approved": session}, goto=EXECUTE)


async def execute(state: AgentState, runtime: Runtime[TurnContext]) -> Command[Literal[ToModel, ToExecute, ToEnd]]:
    ctx = runtime.context
    turn = state["turn"].copy()
    messages = list(state["messages"])
    executed = list(turn.get("executed") or ())
    todo = [c for c in turn["pending"] if c["call_id"] not in executed]
    if not todo:
        return Command(update={"turn": {**turn, "pending": []}}, goto=MODEL)
    call = todo[0]
    turn["executed"] = [*executed, call["call_id"]]
    last = len(todo) == 1
    if call["status"] != "run":  # denied or failed before running: the model reads why
        notice = call.get("notice") or "The call was not run."
        ctx.emit(ToolResult(call_id=call["call_id"], name=call["name"], ok=False, output="", error=notice))
        # the agent's own words around parts already judged (the policy's reason, a judged denial reason)
        messages.append(seal_trusted({"role": "tool", "content": notice, "tool_name": call["name"], "notice": True},
                                     "agent"))
        return next_step(ctx, state, turn, messages, last, notice if call["status"] == "failed" else None)
    produced = await ctx.deps.tool_path.produce(as_call(call), thread_id=ctx.thread_id, approval=call.get("approval"))
    if last:  # the model is next: it starts on the result while the guards read it (used only if they pass it)
        following = [*messages, {"role": "tool", "content": produced.text, "tool_name": call["name"]}]
        await speculate(ctx, following, dropped=state.get("dropped", 0), turn_start=turn["start"])
    ran = await ctx.judge_result(as_call(call), produced, messages)
    if ran.guard_error:
        assert ran.judgement is not None  # a guard error is a judgement's outcome
        return Command(update=refuse(ctx, {**state, "turn": turn}, ran.judgement.stage, ran.judgement), goto=END)
    failed = not ran.output.ok and not ran.withheld
    # Shown = judged: a failed tool's error is shown as the judged text (cut to tools.max_result_chars), never
    # the tool's whole, unjudged error.
    ctx.emit(ToolResult(call_id=call["call_id"], name=call["name"], ok=ran.output.ok and not ran.withheld,
                        output=ran.text, error=ran.text if failed else None,
                        limits_hit=ran.limits_hit, blocked=ran.withheld))
    message = {"role": "tool", "content": ran.text, "tool_name": call["name"]}
    if ran.withheld:  # the policy's notice in place of the result
        messages.append(seal_trusted({**message, "notice": True}, "policy"))
    else:
        assert ran.judgement is not None  # a result that was not withheld passed its judgement
        messages.append(seal(message, ran.judgement))
    return next_step(ctx, state, turn, messages, last, (ran.output.error or "tool error") if failed else None)


def next_step(ctx: TurnContext, state: AgentState, turn: TurnData, messages: list[MessageDict], last: bool,
              failure: str | None) -> Command[Literal[ToModel, ToExecute, ToEnd]]:
    """After one call: count a failure (the retry limit may end the turn), then the next call or the model (straight
    back after the last call: one superstep fewer per step)."""
    update: AgentState = {"messages": messages}
    if failure is not None and (ended := after_failure(ctx, state, turn, update, failure)):
        return Command(update=ended, goto=END)
    if last:
        turn["pending"] = []
        return Command(update={**update, "turn": turn}, goto=MODEL)
    return Command(update={**update, "turn": turn}, goto=EXECUTE)

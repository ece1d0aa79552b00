"""The tool half of the graph: review each proposed call (rules, guards), ask a human where needed, execute.

Review and execution are separate nodes, and approval sits between them in a node without side effects, because
LangGraph re-runs an interrupted node from its start on resume: re-running `approval` only re-asks nothing (the
recorded answers are replayed), and `execute` never re-runs for an approval. `execute` runs one call per pass and
records its id, so a call is never run twice, even when a crash interrupts the loop.
"""

from __future__ import annotations

import json
from typing import Any

from langchain_core.runnables import RunnableConfig
from langgraph.graph import END
from langgraph.types import Command, interrupt

from assistant.agent import rules_adapter
from assistant.agent.approval import coerce_decision, denial_notice
from assistant.agent.deps import AgentDeps
from assistant.agent.nodes import APPROVAL, EXECUTE, MODEL, emit, emit_verdicts, fail, refuse, speculate, thread_of
from assistant.agent.state import AgentState
from assistant.events import ToolCallProposed, ToolResult

CODE_TOOL = "code_interpreter"


def make_review(deps: AgentDeps):
    async def review_calls(state: AgentState, config: RunnableConfig) -> Command:
        # Guards first, for every call: a call whose text a guard blocks never appears in any event (not even as
        # ToolCallProposed) and is never run. Then the policy's rules decide run / ask / deny.
        turn = dict(state["turn"])
        pending = [dict(c) for c in turn["pending"]]
        session = set(state.get("session_approved") or ())
        for call in pending:
            if call["status"] != "proposed":
                continue
            guards_ask = False
            text = json.dumps({"name": call["name"], "arguments": call["arguments"]}, ensure_ascii=False)
            for stage, checked, language in (("tool_call", text, None), ("code", code_of(call), "python")):
                if checked is None:
                    continue
                result = await deps.pipeline.check(
                    stage, checked, role="assistant", language=language, thread_id=thread_of(config)
                )
                emit_verdicts(result)
                if (result.error is not None and result.decision != "allow") or result.decision == "block":
                    return refuse(deps, {**state, "turn": turn}, stage, result)  # never executed
                guards_ask = guards_ask or result.decision == "ask"
            emit(ToolCallProposed(call_id=call["call_id"], name=call["name"], arguments=dict(call["arguments"])))
            if call["name"] not in deps.tools:
                known = ", ".join(deps.tools) or "none"
                call.update(status="failed", notice=f"Error: there is no tool named {call['name']!r} (tools: {known}).")
                continue
            rule = rules_adapter.check(deps, call, turn, session)
            turn["calls"] = turn.get("calls", 0) + 1
            if rule.decision == "deny":
                call.update(status="denied", notice=f"The policy denied the call to {call['name']}: {rule.reason}")
            elif rule.decision == "ask" or guards_ask:
                reason = rule.reason if rule.decision == "ask" else "a guard asked for a human decision on this call"
                call.update(status="ask", reason=reason, untrusted_rule=rule.untrusted_rule)
            else:
                call["status"] = "run"
        turn["pending"] = pending
        goto = APPROVAL if any(c["status"] == "ask" for c in pending) else EXECUTE
        return Command(update={"turn": turn}, goto=goto)

    return review_calls


def code_of(call: dict[str, Any]) -> str | None:
    if call["name"] != CODE_TOOL:
        return None
    code = call["arguments"].get("code")
    return code if isinstance(code, str) else json.dumps(call["arguments"])


def make_approval(deps: AgentDeps):
    async def approval(state: AgentState) -> Command:
        # No side effects before the last interrupt(): this node re-runs from the top on every resume.
        turn = dict(state["turn"])
        pending = [dict(c) for c in turn["pending"]]
        session = list(state.get("session_approved") or ())
        for call in pending:
            if call["status"] != "ask":
                continue
            if call["name"] in session and not call.get("untrusted_rule"):
                call["status"] = "run"
                continue
            answer = interrupt({
                "call_id": call["call_id"], "name": call["name"], "arguments": call["arguments"],
                "reason": call.get("reason", ""),
            })  # fmt: skip
            decision = coerce_decision(answer)
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
        executed = list(turn.get("executed") or [])
        todo = [c for c in turn["pending"] if c["call_id"] not in executed]
        if not todo:
            turn["pending"] = []
            return Command(update={"turn": turn}, goto=MODEL)
        call = todo[0]
        executed.append(call["call_id"])
        turn["executed"] = executed
        if call["status"] != "run":  # denied or failed before running: the model reads why
            notice = call.get("notice") or "The call was not run."
            emit(ToolResult(call_id=call["call_id"], name=call["name"], ok=False, output="", error=notice))
            messages.append({"role": "tool", "content": notice, "tool_name": call["name"]})
            return next_step(deps, state, turn, messages, failed=call["status"] == "failed", what=notice)
        output = await rules_adapter.run_tool(deps.tools[call["name"]], call["arguments"])
        text = output.output if output.ok else (output.error or output.output or "the tool failed")
        text, cut = cut_result(text, deps.policy.tools.max_result_chars)
        if not any(c["call_id"] not in executed for c in turn["pending"]):  # the model is next: let it start
            following = [*messages, {"role": "tool", "content": text, "tool_name": call["name"]}]
            await speculate(deps, config, following, dropped=state.get("dropped", 0), turn_start=turn["start"])
        result = await deps.pipeline.check("tool_result", text, role="user", thread_id=thread_of(config))
        emit_verdicts(result)
        if result.error is not None and result.decision != "allow":
            return refuse(deps, {**state, "turn": turn}, "tool_result", result)
        if result.decision in ("block", "ask"):
            # The model sees a notice instead of the blocked text; so does the user.
            notice = f"{deps.policy.refusals.tool_result} (The result of {call['name']} was withheld.)"
            emit(ToolResult(call_id=call["call_id"], name=call["name"], ok=False, output=notice, blocked=True))
            messages.append({"role": "tool", "content": notice, "tool_name": call["name"]})
            return next_step(deps, state, turn, messages, failed=False, what="")
        emit(ToolResult(
            call_id=call["call_id"], name=call["name"], ok=output.ok, output=text if output.ok else output.output,
            error=output.error, limits_hit=(*output.limits_hit, *(("max_result_chars",) if cut else ())),
        ))  # fmt: skip
        messages.append({"role": "tool", "content": text, "tool_name": call["name"]})
        turn["untrusted"] = True  # third-party text is in the context now: side-effect tools need approval
        return next_step(deps, state, turn, messages, failed=not output.ok, what=output.error or "tool error")

    return execute


def cut_result(text: str, limit: int) -> tuple[str, bool]:
    """A tool result within the policy's tools.max_result_chars (the guards and the model see the same text)."""
    if len(text) <= limit:
        return text, False
    note = f"\n[... cut: the tool returned {len(text):,} characters; the policy allows {limit:,} " \
           "(tools.max_result_chars)]"  # fmt: skip
    return text[:limit] + note, True


def next_step(
    deps: AgentDeps, state: AgentState, turn: dict[str, Any], messages: list, *, failed: bool, what: str
) -> Command:
    if failed:
        turn["tool_failures"] = turn.get("tool_failures", 0) + 1
        if turn["tool_failures"] > deps.policy.agent.max_tool_retries:
            return fail({**state, "turn": turn}, "tool", f"gave up after {turn['tool_failures']} failed tool calls "
                        f"({what})")  # fmt: skip
    # Straight back to the model after the last call: one superstep (and checkpoint) fewer per step.
    done = set(turn.get("executed") or ())
    more = any(c["call_id"] not in done for c in turn.get("pending") or ())
    if not more:
        turn["pending"] = []
    return Command(update={"turn": turn, "messages": messages}, goto=EXECUTE if more else MODEL)


__all__ = ["END", "make_approval", "make_execute", "make_review"]

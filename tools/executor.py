"""The one tool path: what happens to a proposed call, for the agent, `assistant tools run`, the server and MCP.

    review: guards (tool_call stage on the call, code stage on its code) -> the policy's rules -> run / ask / deny
    [approval: the caller's - the agent pauses its graph, `tools run` reads --approve]
    run: the tool -> the text the model will read (stdout, stderr and the error, cut to tools.max_result_chars)
         -> guards (tool_result and model_output stages on exactly that text) -> the text, or a notice in its place

The guards come before the rules and the approval so that a human is never shown, or asked about, a call a guard
blocks. `execute` is the whole path for callers without a graph of their own.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from guards.audit.log import arguments_text
from guards.policy import Policy
from guards.policy.registry import TOOL_RESULT
from guards.runtime.gate import TOOL_CALL_PATH, TOOL_RESULT_PATH, Judgement, judge, record
from guards.runtime.pipeline import GuardPipeline
from model import telemetry
from model.messages import ToolCall
from tools.base import Tool, ToolOutput
from tools.rules import TurnState, check_call

CODE_TOOL = "code_interpreter"
Action = Literal["run", "ask", "deny", "block", "invalid"]
Approver = Callable[[ToolCall, "Review"], Awaitable[bool]]  # True: run it (the caller owns the human)
Conversation = Sequence[tuple[str, str]]


@dataclass(frozen=True)
class Review:
    action: Action  # block: a guard stopped the call (the turn ends); deny / invalid: the model reads `reason`
    reason: str
    rule: str = ""  # the tool rule that decided (tools.rules), "" when a guard did
    judgement: Judgement | None = None

    @property
    def session_waivable(self) -> bool:
        """An "approve for the session" may stand in for the question: only the policy's approval_required asked
        (never the untrusted-content rule, never a guard)."""
        return self.action == "ask" and self.rule == "approval_required" and not self.guard_flags

    @property
    def guard_flags(self) -> tuple[str, ...]:
        return self.judgement.flags if self.judgement is not None else ()


@dataclass(frozen=True)
class Ran:
    text: str  # exactly what the model reads and the user is shown (a notice when withheld)
    output: ToolOutput
    limits_hit: tuple[str, ...]
    withheld: bool = False  # a guard blocked the result: `text` is the policy's notice instead
    judgement: Judgement | None = None

    @property
    def guard_error(self) -> bool:
        return self.judgement is not None and self.judgement.outcome == "error"


@dataclass(frozen=True)
class Produced:
    """A call's output as the model would read it, before its guards ran (`ToolPath.produce`)."""

    text: str
    output: ToolOutput
    limits_hit: tuple[str, ...]
    trace: telemetry.Trace | None = None  # the run's span, parent of its result's checks (None when not tracing)


@dataclass(frozen=True)
class Execution:
    review: Review
    ran: Ran | None  # None when the call did not run


def call_json(call: ToolCall) -> str:
    return json.dumps({"name": call.name, "arguments": call.arguments}, ensure_ascii=False)


def code_of(call: ToolCall) -> str | None:
    if call.name != CODE_TOOL:
        return None
    code = call.arguments.get("code")
    return code if isinstance(code, str) else json.dumps(call.arguments)


def model_text(output: ToolOutput) -> str:
    """What the model reads of a result: the output, and on failure the error too (unless the output says it)."""
    if output.ok or not output.error or output.error in output.output:
        return output.output or ("" if output.ok else "the tool failed")
    return f"{output.output}\nError: {output.error}" if output.output else f"Error: {output.error}"


def cut_result(text: str, limit: int) -> tuple[str, bool]:
    """A tool result within the policy's tools.max_result_chars (the guards and the model see the same text)."""
    if len(text) <= limit:
        return text, False
    note = f"\n[... cut: the tool returned {len(text):,} characters; the policy allows {limit:,} " \
           "(tools.max_result_chars)]"
    return text[:limit] + note, True


class ToolPath:
    def __init__(self, tools: Mapping[str, Tool], policy: Policy, pipeline: GuardPipeline) -> None:
        self.tools = tools
        self.policy = policy
        self.pipeline = pipeline

    async def review(
        self, call: ToolCall, state: TurnState, *, conversation: Conversation = (), thread_id: str | None = None,
        on_result: Callable[[Any], None] | None = None,
    ) -> Review:
        judgement = await judge(self.pipeline, TOOL_CALL_PATH, call_json(call), code=code_of(call),
                                conversation=conversation, thread_id=thread_id, on_result=on_result)
        if judgement.stops:
            return Review("block", f"the {judgement.stage} stage stopped the call", judgement=judgement)
        tool = self.tools.get(call.name)
        if tool is None:
            known = ", ".join(self.tools) or "none"
            return Review("invalid", f"there is no tool named {call.name!r} (tools: {known})", judgement=judgement)
        rule = check_call(call, self.policy.tools, state, side_effects=tool.side_effects)
        if rule.action == "deny":
            return Review("deny", rule.reason, rule.rule, judgement)
        if judgement.outcome == "ask":
            why = "; ".join(judgement.flags) or "a guard asked"
            reason = f"a guard flagged this call ({why})" + (f"; also: {rule.reason}" if rule.action == "ask" else "")
            return Review("ask", reason, rule.rule if rule.action == "ask" else "", judgement)
        return Review("run" if rule.action == "allow" else rule.action, rule.reason, rule.rule, judgement)

    async def produce(self, call: ToolCall, *, thread_id: str | None = None, approval: str | None = None) -> Produced:
        """Run an approved call: the text the model would read, not yet judged (nothing may show or store it; the
        agent starts its next model step on it while the guards read it). `approval`: how a human decided it, for
        its span (approve, approve_session, session; None when nobody was asked)."""
        tool = self.tools[call.name]
        trace = telemetry.child(f"execute_tool {call.name}", self._run_attributes(call, tool, approval))
        try:
            with telemetry.within(trace):  # an MCP call or a sandboxed run is its child
                output = await tool.run(call.arguments)
        except Exception as exc:  # a tool bug is the model's problem to route around, not a crash of the turn
            output = ToolOutput.failure(f"{tool.name} failed: {type(exc).__name__}: {exc}")
        except BaseException as exc:  # cancelled: the span still ends
            telemetry.end(trace, error=exc)
            raise
        text, cut = cut_result(model_text(output), self.policy.tools.max_result_chars)
        limits = (*output.limits_hit, *(("max_result_chars",) if cut else ()))
        record(self.pipeline, "tool_run", thread_id=thread_id, text=text, tool=call.name, call_id=call.call_id,
               arguments=arguments_text(call.arguments), ok=output.ok, limits_hit=list(limits))
        telemetry.end(trace, {"assistant.tool.ok": output.ok, "assistant.tool.limits_hit": limits or None,
                              "assistant.tool.refused": output.refused})
        return Produced(text, output, limits, trace)

    def _run_attributes(self, call: ToolCall, tool: Tool, approval: str | None) -> dict[str, Any] | None:
        """A tool run's span attributes (GenAI `execute_tool`); its arguments only as `audit.texts` allows (they
        passed the tool_call guards). Not built when not tracing."""
        if telemetry.current() is None:
            return None
        return {
            "gen_ai.operation.name": "execute_tool", "gen_ai.tool.name": call.name,
            "gen_ai.tool.call.id": call.call_id, "assistant.tool.side_effects": tool.side_effects,
            "assistant.tool.approval": approval or "not_asked",
            **telemetry.text_attributes("gen_ai.tool.call.arguments", arguments_text(call.arguments),
                                        self.policy.audit.texts),
        }

    async def judge_result(
        self, call: ToolCall, produced: Produced, *, conversation: Conversation = (), thread_id: str | None = None,
        on_result: Callable[[Any], None] | None = None,
    ) -> Ran:
        """Judge what `produce` returned: the text, or the policy's notice in its place."""
        with telemetry.within(produced.trace):  # the checks of a result are children of the run that made it
            judgement = await judge(self.pipeline, TOOL_RESULT_PATH, produced.text, conversation=conversation,
                                    thread_id=thread_id, on_result=on_result)
        if not judgement.passed:
            notice = f"{self.policy.refusals.for_stage(TOOL_RESULT)} (The result of {call.name} was withheld.)"
            return Ran(notice, produced.output, produced.limits_hit, withheld=True, judgement=judgement)
        return Ran(produced.text, produced.output, produced.limits_hit, judgement=judgement)

    async def run(
        self, call: ToolCall, *, conversation: Conversation = (), thread_id: str | None = None,
        on_result: Callable[[Any], None] | None = None,
    ) -> Ran:
        """Run an approved call and judge its result."""
        produced = await self.produce(call, thread_id=thread_id)
        return await self.judge_result(call, produced, conversation=conversation, thread_id=thread_id,
                                       on_result=on_result)

    async def execute(
        self, call: ToolCall, state: TurnState = TurnState(), *, approve: Approver | None = None,
        conversation: Conversation = (), thread_id: str | None = None, interface: str = "api",
    ) -> Execution:
        """The whole path for one call: review, ask `approve` when the review asks, run."""
        review = await self.review(call, state, conversation=conversation, thread_id=thread_id)
        if review.action == "ask":
            arguments = arguments_text(call.arguments)
            record(self.pipeline, "approval_request", thread_id=thread_id, tool=call.name, arguments=arguments,
                   reason=review.reason, interface=interface)
            approved = approve is not None and await approve(call, review)
            record(self.pipeline, "approval_decision", thread_id=thread_id, tool=call.name, arguments=arguments,
                   interface=interface, decision="once" if approved else "deny", reason=review.reason)
            if not approved:
                return Execution(review, None)
        elif review.action != "run":
            return Execution(review, None)
        return Execution(review, await self.run(call, conversation=conversation, thread_id=thread_id))

"""Run one proposed tool call the way the agent does: rules first, then approval, validation, and the tool."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Literal

from model.messages import ToolCall
from tools.base import ToolArgumentError, ToolOutput
from tools.registry import ToolRegistry
from tools.rules import RuleDecision, TurnState, check_call

# The agent owns the human: an async callback that returns True to let the call run. Tools never prompt.
Approver = Callable[[ToolCall, RuleDecision], Awaitable[bool]]
Status = Literal["ran", "refused", "invalid"]


@dataclass(frozen=True)
class Execution:
    status: Status  # ran (even if the tool failed) | refused by the policy or a human | invalid call
    output: ToolOutput
    decision: RuleDecision | None  # None when the call was invalid before the rules were asked
    state: TurnState  # the turn state after this call


async def execute_call(call: ToolCall, registry: ToolRegistry, tools_config: Any, state: TurnState,
                       approve: Approver | None = None) -> Execution:
    """Apply the policy to `call`, ask `approve` when a rule says so, then validate and run it."""
    tool = registry.get(call.name)
    if tool is None:
        known = ", ".join(registry.names()) or "none"
        return Execution("invalid", ToolOutput.failure(f"unknown tool {call.name!r} (available: {known})"), None,
                         state)
    decision = check_call(call, tools_config, state, side_effects=tool.side_effects)
    if decision.action == "deny":
        return Execution("refused", ToolOutput.failure(f"refused by the policy: {decision.reason}", refused=True),
                         decision, state)
    if decision.action == "ask":
        approved = approve is not None and await approve(call, decision)
        if not approved:
            why = "no one was asked (non-interactive run)" if approve is None else "not approved"
            return Execution("refused", ToolOutput.failure(f"needs approval, {why}: {decision.reason}",
                                                           refused=True), decision, state)
    try:
        tool.validate(call.arguments)
    except ToolArgumentError as exc:
        output = ToolOutput.failure(f"invalid arguments for {call.name}: {exc}")
        return Execution("invalid", output, decision, state.after_call())
    output = await tool.run(call.arguments)
    if output.refused:
        return Execution("refused", output, decision, state)
    return Execution("ran", output, decision, state.after_call())

"""The agent's seam to the tools package: the policy's tool rules for one call, and running a tool safely."""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from assistant.agent.deps import AgentDeps


@dataclass(frozen=True)
class RuleOutcome:
    decision: Literal["allow", "ask", "deny"]
    reason: str = ""
    untrusted_rule: bool = False  # asked because of the untrusted-content rule (a session approval does not cover it)


def check(deps: AgentDeps, call: Mapping[str, Any], turn: Mapping[str, Any], session: Collection[str]) -> RuleOutcome:
    """allow / ask / deny for one proposed call, from `tools.rules` with this turn's counters.

    A human's "approve for the session" covers `approval_required`, never the untrusted-content rule: after a tool
    result entered the context, every side-effect call is asked anew (that is the defence against injection)."""
    from model.messages import ToolCall
    from tools.rules import TurnState, check_call

    tool = deps.tools.get(call["name"])
    side_effects = bool(getattr(tool, "side_effects", True))
    untrusted = bool(turn.get("untrusted"))
    state = TurnState(calls_this_turn=int(turn.get("calls", 0)), untrusted_content=untrusted)
    tools_config = deps.policy.tools
    rule = check_call(
        ToolCall(call["name"], dict(call["arguments"]), call.get("call_id")), tools_config, state,
        side_effects=side_effects,
    )  # fmt: skip
    untrusted_rule = rule.rule == "untrusted_content" or (
        rule.action == "ask" and side_effects and untrusted and tools_config.untrusted_content != "allow"
    )
    return RuleOutcome(rule.action, rule.reason, untrusted_rule)


async def run_tool(tool: Any, arguments: Mapping[str, Any]) -> Any:
    """`Tool.run` validates and never raises for a tool failure; a bug in a tool still becomes a failed result."""
    from tools.base import ToolOutput

    try:
        return await tool.run(arguments)
    except Exception as exc:  # a tool bug is the model's problem to route around, not a crash of the turn
        return ToolOutput.failure(f"{tool.name} failed: {type(exc).__name__}: {exc}")

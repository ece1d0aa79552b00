"""The policy's tool rules, applied to one proposed call before anything runs (pure).

Order: deny list, allow list, argument constraints (each of these refuses), then the untrusted-content
rule and approval-required tools (each of these asks a human; the first refuses when the policy says `block`).
`TurnState` is the one description of a turn the rules read; the agent derives it from its checkpointed thread.
`max_calls_per_turn` is a bound on the turn, not on one call: the agent's model step enforces it (ends the turn).
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from guards.policy.tools_config import ArgumentRule, ToolsConfig
from model.messages import ToolCall

RuleAction = Literal["allow", "ask", "deny"]


@dataclass(frozen=True)
class RuleDecision:
    action: RuleAction
    reason: str
    # Which rule decided: deny, allow, max_calls_per_turn, arguments, approval_required, untrusted_content.
    rule: str = ""


@dataclass(frozen=True)
class TurnState:
    """What the rules need to know about the conversation (the agent derives it from its thread's context window)."""

    untrusted_content: bool = False  # a tool result (possibly attacker-written) is in what the model sees


def _argument_text(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value, sort_keys=True, ensure_ascii=False)


def check_arguments(name: str, arguments: dict[str, Any], rules: Mapping[str, ArgumentRule]) -> str | None:
    """None when every constrained argument passes, else why not. A missing argument is not constrained."""
    for arg, rule in rules.items():
        if arg not in arguments:
            continue
        value = arguments[arg]
        # Full match: an allow-pattern such as `[a-z]+` must not pass `abc; rm -rf /`.
        if rule.pattern is not None and not re.fullmatch(rule.pattern, _argument_text(value)):
            return f"argument `{arg}` of {name} does not match the policy's pattern {rule.pattern!r}"
        if rule.json_schema is not None:
            from jsonschema import exceptions, validators

            try:
                validators.validator_for(rule.json_schema)(rule.json_schema).validate(value)
            except exceptions.ValidationError as exc:
                return f"argument `{arg}` of {name} breaks the policy's schema: {exc.message}"
            except exceptions.SchemaError as exc:  # fail closed on a schema the policy check missed
                return f"the policy's schema for `{arg}` of {name} is invalid: {exc.message}"
    return None


def check_call(
    call: ToolCall, tools_config: ToolsConfig, state: TurnState, *, side_effects: bool = True
) -> RuleDecision:
    """Decide one proposed call from the policy's `tools` section. `side_effects` defaults to the safe answer."""
    name = call.name
    if name in tools_config.deny:
        return RuleDecision("deny", f"{name} is on the policy's deny list", "deny")
    if tools_config.allow is not None and name not in tools_config.allow:
        return RuleDecision("deny", f"{name} is not on the policy's allow list", "allow")
    problem = check_arguments(name, call.arguments, tools_config.arguments.get(name, {}))
    if problem is not None:
        return RuleDecision("deny", problem, "arguments")
    # Untrusted content before approval_required: a human's "approve for the session" waives only the latter, so
    # the decision must name the rule that a session approval cannot stand in for.
    if side_effects and state.untrusted_content and tools_config.untrusted_content != "allow":
        reason = f"{name} has side effects and a tool result is in the conversation the model sees"
        action: RuleAction = "ask" if tools_config.untrusted_content == "ask" else "deny"
        return RuleDecision(action, reason, "untrusted_content")
    if name in tools_config.approval_required:
        return RuleDecision("ask", f"{name} needs a human's approval (approval_required)", "approval_required")
    return RuleDecision("allow", "allowed by the policy")

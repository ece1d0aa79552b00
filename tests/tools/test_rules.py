"""The policy's tool rules (pure) and the executor that applies them before anything runs."""

from __future__ import annotations

import pytest

from guards.policy import parse_policy_text
from model.messages import ToolCall
from tools import ToolRegistry, TurnState, check_call, execute_call, tool

POLICY = """
version: 1
tools:
  deny: [rm_rf]
  approval_required: [pay]
  max_calls_per_turn: 2
  untrusted_content: ask
  arguments:
    fetch:
      url: {pattern: 'https://example\\.com/[a-z/]*'}
    pay:
      amount: {schema: {type: number, maximum: 100}}
"""


@pytest.fixture(scope="module")
def tools_config():  # type: ignore[no-untyped-def]
    return parse_policy_text(POLICY).tools


def decide(tools_config, name: str, args: dict, state: TurnState = TurnState(), side_effects: bool = False) -> str:  # type: ignore[no-untyped-def]
    return check_call(ToolCall(name, args), tools_config, state, side_effects=side_effects).action


def test_deny_and_allow_lists(tools_config) -> None:  # type: ignore[no-untyped-def]
    assert decide(tools_config, "rm_rf", {}) == "deny"
    assert decide(tools_config, "anything", {}) == "allow"
    only = parse_policy_text("version: 1\ntools: {allow: [fetch]}\n").tools
    assert decide(only, "fetch", {}) == "allow" and decide(only, "other", {}) == "deny"


def test_regex_constraints_must_match_in_full(tools_config) -> None:  # type: ignore[no-untyped-def]
    assert decide(tools_config, "fetch", {"url": "https://example.com/docs"}) == "allow"
    assert decide(tools_config, "fetch", {"url": "https://example.com/docs?x=https://evil.com"}) == "deny"
    assert decide(tools_config, "fetch", {"url": "https://evil.com/https://example.com/"}) == "deny"
    assert decide(tools_config, "fetch", {"url": "https://example.com/a\nb"}) == "deny"


def test_json_schema_constraints_and_approval(tools_config) -> None:  # type: ignore[no-untyped-def]
    assert decide(tools_config, "pay", {"amount": 500}) == "deny"
    assert decide(tools_config, "pay", {"amount": "5"}) == "deny"
    decision = check_call(ToolCall("pay", {"amount": 5}), tools_config, TurnState())
    assert decision.action == "ask" and decision.rule == "approval_required"


def test_calls_per_turn(tools_config) -> None:  # type: ignore[no-untyped-def]
    state = TurnState().after_call().after_call()
    assert state.calls_this_turn == 2
    assert decide(tools_config, "anything", {}, state) == "deny"


def test_untrusted_content_gates_side_effects_only(tools_config) -> None:  # type: ignore[no-untyped-def]
    tainted = TurnState(untrusted_content=True)
    assert decide(tools_config, "send", {}, tainted, side_effects=True) == "ask"
    assert decide(tools_config, "lookup", {}, tainted, side_effects=False) == "allow"
    assert decide(tools_config, "send", {}, TurnState(), side_effects=True) == "allow"
    block = parse_policy_text("version: 1\ntools: {untrusted_content: block}\n").tools
    assert decide(block, "send", {}, tainted, side_effects=True) == "deny"
    # Unknown side effects count as side effects.
    assert check_call(ToolCall("send", {}), tools_config, tainted).action == "ask"


async def test_executor_asks_the_injected_approver(tools_config) -> None:  # type: ignore[no-untyped-def]
    paid: list[float] = []

    @tool(side_effects=True)
    def pay(amount: float) -> str:
        """Pay an amount."""
        paid.append(amount)
        return "paid"

    registry = ToolRegistry([pay])
    asked = []

    async def yes(call, decision):  # type: ignore[no-untyped-def]
        asked.append((call.name, decision.rule))
        return True

    async def no(call, decision):  # type: ignore[no-untyped-def]
        return False

    refused = await execute_call(ToolCall("pay", {"amount": 5}), registry, tools_config, TurnState())
    assert refused.status == "refused" and refused.output.refused and paid == []
    denied = await execute_call(ToolCall("pay", {"amount": 5}), registry, tools_config, TurnState(), approve=no)
    assert denied.status == "refused" and paid == []
    ran = await execute_call(ToolCall("pay", {"amount": 5}), registry, tools_config, TurnState(), approve=yes)
    assert ran.status == "ran" and ran.output.output == "paid" and paid == [5.0]
    assert asked == [("pay", "approval_required")]
    assert ran.state == TurnState(calls_this_turn=1, untrusted_content=True)
    invalid = await execute_call(ToolCall("pay", {"amount": 5, "memo": "x"}), registry, tools_config, TurnState(),
                                 approve=yes)
    assert invalid.status == "invalid" and paid == [5.0]
    unknown = await execute_call(ToolCall("nope", {}), registry, tools_config, TurnState())
    assert unknown.status == "invalid" and "unknown tool" in (unknown.output.error or "")

"""The policy's tool rules (pure) and the one tool path (tools.executor.ToolPath) that applies them."""

from __future__ import annotations

import pytest

from guards.policy import parse_policy_text
from model.messages import ToolCall
from tools import ToolPath, TurnState, check_call, tool

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


def test_untrusted_content_gates_side_effects_only(tools_config) -> None:  # type: ignore[no-untyped-def]
    tainted = TurnState(untrusted_content=True)
    assert decide(tools_config, "send", {}, tainted, side_effects=True) == "ask"
    assert decide(tools_config, "lookup", {}, tainted, side_effects=False) == "allow"
    assert decide(tools_config, "send", {}, TurnState(), side_effects=True) == "allow"
    block = parse_policy_text("version: 1\ntools: {untrusted_content: block}\n").tools
    assert decide(block, "send", {}, tainted, side_effects=True) == "deny"
    # Unknown side effects count as side effects.
    assert check_call(ToolCall("send", {}), tools_config, tainted).action == "ask"


class NoGuards:
    """A pipeline whose stages have no guards enabled (the tool path's guards are tested end to end in tests/agent)."""

    def enabled_guards(self, stage: str) -> list[str]:
        return []

    async def check(self, stage: str, text: str, **kwargs):  # type: ignore[no-untyped-def]
        from guards.verdict import StageResult

        return StageResult.from_verdicts(stage, [])


async def test_tool_path_asks_the_injected_approver(tools_config) -> None:  # type: ignore[no-untyped-def]
    paid: list[float] = []

    @tool(side_effects=True)
    def pay(amount: float) -> str:
        """Pay an amount."""
        paid.append(amount)
        return "paid"

    @tool
    def lookup(q: str) -> str:
        """Look something up."""
        return f"found {q}"

    policy = parse_policy_text(POLICY)
    path = ToolPath({"pay": pay}, policy, NoGuards())
    asked = []

    async def yes(call, review):  # type: ignore[no-untyped-def]
        asked.append((call.name, review.rule))
        return True

    async def no(call, review):  # type: ignore[no-untyped-def]
        return False

    refused = await path.execute(ToolCall("pay", {"amount": 5}))
    assert refused.review.action == "ask" and refused.ran is None and paid == []
    denied = await path.execute(ToolCall("pay", {"amount": 5}), approve=no)
    assert denied.ran is None and paid == []
    ran = await path.execute(ToolCall("pay", {"amount": 5}), approve=yes)
    assert ran.ran is not None and ran.ran.text == "paid" and paid == [5.0]
    assert asked == [("pay", "approval_required")] and refused.review.session_waivable
    invalid = await path.execute(ToolCall("pay", {"amount": 5, "memo": "x"}), approve=yes)
    assert invalid.ran is not None and not invalid.ran.output.ok and paid == [5.0]
    assert "invalid arguments" in invalid.ran.text  # the model reads the error it must correct
    allowed = await ToolPath({"lookup": lookup}, policy, NoGuards()).execute(ToolCall("lookup", {"q": "x"}))
    assert allowed.review.action == "run" and allowed.ran is not None and allowed.ran.text == "found x"
    unknown = await path.execute(ToolCall("nope", {}))
    assert unknown.review.action == "invalid" and "no tool named" in unknown.review.reason


def test_untrusted_content_is_named_before_approval_required(tools_config) -> None:  # type: ignore[no-untyped-def]
    """A session approval may waive approval_required only: when both apply, the rule named is untrusted_content."""
    decision = check_call(ToolCall("pay", {"amount": 5}), tools_config, TurnState(untrusted_content=True))
    assert decision.action == "ask" and decision.rule == "untrusted_content"

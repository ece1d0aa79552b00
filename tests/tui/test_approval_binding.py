"""Issue 25 (7) in the chat: the decision a human makes in the approval dialog names the call the dialog showed, and
reaches the agent with it (the agent refuses a decision on any other call)."""

from __future__ import annotations

from assistant.tui.backend import _to_agent
from assistant.tui.session import ApprovalDecision


def test_the_dialogs_decision_reaches_the_agent_bound_to_its_call() -> None:
    for kind, action in (("once", "approve"), ("session", "approve_session"), ("deny", "deny")):
        decision = _to_agent(ApprovalDecision(kind, "why" if kind == "deny" else "", call_id="call-3"))  # type: ignore[arg-type]
        assert (decision.action, decision.call_id) == (action, "call-3")
    assert _to_agent(ApprovalDecision("deny", "not now", call_id="c")).reason == "not now"

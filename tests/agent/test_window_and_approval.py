"""Pure pieces: the context window and approval decisions."""

from __future__ import annotations

import pytest

from assistant.agent.approval import APPROVE, Decision, coerce_decision
from assistant.agent.window import ContextOverflow, fit_window


def _encode(messages):
    return [0] * sum(len(m["content"]) for m in messages)


MESSAGES = [
    {"role": "user", "content": "a" * 10}, {"role": "assistant", "content": "b" * 10},
    {"role": "user", "content": "c" * 10}, {"role": "tool", "content": "d" * 10},
    {"role": "user", "content": "e" * 10},
]


def test_window_keeps_everything_that_fits() -> None:
    window = fit_window(MESSAGES, _encode, budget=50, already_dropped=0, current_turn_start=4)
    assert window.start == 0 and window.newly_dropped == 0


def test_window_drops_whole_oldest_turns_and_never_the_current_one() -> None:
    window = fit_window(MESSAGES, _encode, budget=30, already_dropped=0, current_turn_start=4)
    assert window.start == 2 and window.newly_dropped == 2  # starts on a user message
    window = fit_window(MESSAGES, _encode, budget=10, already_dropped=2, current_turn_start=4)
    assert window.start == 4
    with pytest.raises(ContextOverflow):
        fit_window(MESSAGES, _encode, budget=5, already_dropped=0, current_turn_start=4)


def test_window_never_moves_back() -> None:
    window = fit_window(MESSAGES, _encode, budget=1000, already_dropped=2, current_turn_start=4)
    assert window.start == 2 and window.newly_dropped == 0


def test_decisions_coerce_and_fail_closed() -> None:
    assert coerce_decision(True) == APPROVE
    assert coerce_decision(False).action == "deny"
    assert coerce_decision({"action": "approve_session"}).action == "approve_session"
    assert coerce_decision("yes please").action == "deny"
    with pytest.raises(ValueError):
        Decision("maybe")  # type: ignore[arg-type]

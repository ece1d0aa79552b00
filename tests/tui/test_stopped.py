"""What a stopped turn leaves in the thread (assistant/stopped.py): pure rules."""

from __future__ import annotations

from assistant.events import GuardVerdict, TokenDelta, ToolCallProposed
from assistant.stopped import input_passed, stopped_messages

INPUT = GuardVerdict(stage="user_input", guard="llama_guard", decision="allow")
OUTPUT = GuardVerdict(stage="model_output", guard="llama_guard", decision="allow")
STOPPED = {"role": "assistant", "content": "Part one. ", "stopped": True}


def test_nothing_is_kept_before_the_input_guards_finished() -> None:
    assert not input_passed([INPUT])
    assert stopped_messages("hi", [INPUT]) == []


def test_the_shown_part_is_kept_marked_stopped() -> None:
    events = [INPUT, OUTPUT, TokenDelta(text="Part one. ")]
    assert stopped_messages("hi", events) == [{"role": "user", "content": "hi"}, STOPPED]
    # a call proposed (input passed) but nothing shown: an empty stopped answer keeps the turns paired
    assert stopped_messages("hi", [INPUT, ToolCallProposed(call_id="c", name="t", arguments={})])[-1]["content"] == ""


def test_a_user_message_the_cancelled_run_stored_is_not_added_twice() -> None:
    events = [INPUT, OUTPUT, TokenDelta(text="Part one. ")]
    stored = [{"role": "user", "content": "hi"}]
    assert stopped_messages("hi", events, stored) == [STOPPED]
    with_tools = [*stored, {"role": "assistant", "content": "", "tool_calls": [{"name": "t"}]}, {"role": "tool"}]
    assert stopped_messages("hi", events, with_tools) == [STOPPED]
    # the same text answered in an earlier turn: this turn's message is new
    earlier = [*stored, {"role": "assistant", "content": "Hello."}]
    assert stopped_messages("hi", events, earlier) == [{"role": "user", "content": "hi"}, STOPPED]

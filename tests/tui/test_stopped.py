"""What a stopped turn leaves in the thread (assistant/stopped.py): pure rules."""

from __future__ import annotations

from assistant.agent.provenance import RECORD, seal
from assistant.events import GuardVerdict, TokenDelta, ToolCallProposed
from assistant.stopped import input_passed, stopped_messages
from guards.runtime.gate import Judgement

INPUT = GuardVerdict(stage="user_input", guard="llama_guard", decision="allow")
OUTPUT = GuardVerdict(stage="model_output", guard="llama_guard", decision="allow")
STOPPED = {"role": "assistant", "content": "Part one. ", "stopped": True}
USER = {"role": "user", "content": "hi"}


def passed(text: str) -> Judgement:
    return Judgement("user_text", text, "pass", ())


def test_nothing_is_kept_before_the_input_guards_finished() -> None:
    assert not input_passed([INPUT])
    assert stopped_messages("hi", [INPUT]) == []


def without_record(messages: list[dict]) -> list[dict]:
    return [{k: v for k, v in m.items() if k != RECORD} for m in messages]


def test_the_shown_part_is_kept_marked_stopped() -> None:
    events = [INPUT, OUTPUT, TokenDelta(text="Part one. ")]
    sealed_user = seal(USER, passed("hi"))
    kept = stopped_messages("hi", events, admitted=sealed_user)
    assert kept[0] == sealed_user and without_record(kept) == [USER, STOPPED]
    assert kept[1][RECORD]["path"] == "shown"  # what the user saw, sealed as such
    # a call proposed (input passed) but nothing shown: an empty stopped answer keeps the turns paired
    events = [INPUT, ToolCallProposed(call_id="c", name="t", arguments={})]
    assert stopped_messages("hi", events, admitted=sealed_user)[-1]["content"] == ""


def test_a_user_message_its_input_guard_did_not_seal_is_never_kept() -> None:
    """Events alone (an attachment's verdicts, say) are no input judgement: only the input guard's sealed message."""
    events = [INPUT, OUTPUT, TokenDelta(text="Part one. ")]
    assert stopped_messages("hi", events) == []
    assert stopped_messages("hi", events, admitted=USER) == []  # unsealed
    assert stopped_messages("hi", events, admitted=seal({"role": "user", "content": "other"}, passed("other"))) == []


def test_a_user_message_the_cancelled_run_stored_is_not_added_twice() -> None:
    events = [INPUT, OUTPUT, TokenDelta(text="Part one. ")]
    stored = [{"role": "user", "content": "hi"}]
    assert without_record(stopped_messages("hi", events, stored)) == [STOPPED]
    with_tools = [*stored, {"role": "assistant", "content": "", "tool_calls": [{"name": "t"}]}, {"role": "tool"}]
    assert without_record(stopped_messages("hi", events, with_tools)) == [STOPPED]
    # the same text answered in an earlier turn: this turn's message is new, kept only as its input guard sealed it
    earlier = [*stored, {"role": "assistant", "content": "Hello."}]
    assert stopped_messages("hi", events, earlier) == []
    assert without_record(stopped_messages("hi", events, earlier, seal(USER, passed("hi")))) == [USER, STOPPED]

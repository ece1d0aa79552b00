"""A verdict is shown under the call it judged (`GuardVerdict.call_id`), live and replayed: a call's own guards run
before the call is shown, so their verdicts wait for its row; a call they blocked is never shown, so its verdicts go
to the reply with the refusal. Turns stored before verdicts named their call are read as the chat showed them then.
And the real session lists the agent's threads through `Assistant.list_threads`."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from fake_session import FakeSession, passed
from tui_helpers import SIZE, ready, send

from assistant.api import Assistant
from assistant.events import Event, GuardVerdict, Refusal, ToolCallProposed, ToolResult
from assistant.tui.backend import AssistantSession
from assistant.tui.session import Approver, LoadProgress
from assistant.tui.transcript import fold_turn, with_call_ids
from assistant.tui.widgets.messages import AssistantMessage

FETCH = {"name": "news"}


def review(call_id: str, decision: str = "allow") -> GuardVerdict:
    return GuardVerdict(stage="tool_call", guard="llama_guard", decision=decision, call_id=call_id)


async def two_calls_then_a_blocked_one(text: str, approve: Approver) -> AsyncIterator[Event]:
    yield passed("user_input")
    for call_id in ("a", "b"):
        yield review(call_id)  # before its row exists
        yield ToolCallProposed(call_id=call_id, name="fetch_page", arguments=FETCH)
        yield ToolResult(call_id=call_id, name="fetch_page", ok=True, output="calm")
        yield passed("tool_result", "prompt_guard", call_id=call_id)
    yield passed("model_output")  # the completion that proposed the next call
    yield review("c", "block")  # never shown
    yield Refusal(stage="tool_call", message="That tool call was blocked by the policy.")


def verdicts_by_row(app: Any) -> tuple[dict[str, list[str]], list[str]]:
    reply = app.query(AssistantMessage).last()
    rows = {call_id: [v.stage for v in view.badge.verdicts] for call_id, view in reply.tool_views.items()}
    return rows, [f"{v.stage}:{v.decision}" for v in reply.badge.verdicts]


async def test_verdicts_go_to_the_call_they_name_live_and_replayed(make_app) -> None:  # type: ignore[no-untyped-def]
    expected_rows = {"a": ["tool_call", "tool_result"], "b": ["tool_call", "tool_result"]}
    expected_reply = ["model_output:allow", "tool_call:block"]
    app = make_app(FakeSession(turns=[two_calls_then_a_blocked_one]))
    async with app.run_test(size=SIZE) as pilot:
        await ready(pilot)
        await send(pilot, "news twice")
        assert verdicts_by_row(app) == (expected_rows, expected_reply)
        thread = app.thread_id
    again = make_app(thread_id=thread)  # replayed from the chat's store
    async with again.run_test(size=SIZE) as pilot:
        await ready(pilot)
        assert verdicts_by_row(again) == (expected_rows, expected_reply)
        ((_, events),) = again.store.turns(thread)
    turn = fold_turn("news twice", events)
    assert [[v.stage for v in call.verdicts] for call in turn.tool_calls] == list(expected_rows.values())
    assert [v.decision for v in turn.output_verdicts] == ["allow", "block"]


def test_turns_stored_before_call_ids_read_as_shown_then() -> None:
    legacy = [
        GuardVerdict(stage="user_input", guard="prompt_guard", decision="allow"),
        ToolCallProposed(call_id="attachment-0", name="attachment", arguments={"file": "a.txt"}),
        GuardVerdict(stage="model_output", guard="llama_guard", decision="allow"),
        ToolResult(call_id="attachment-0", name="attachment", ok=True, output="x"),
        ToolCallProposed(call_id="c1", name="code_interpreter", arguments={"code": "1"}),
        GuardVerdict(stage="code", guard="code_shield", decision="allow"),
        GuardVerdict(stage="model_output", guard="llama_guard", decision="allow"),
    ]
    owners = [e.call_id for e in with_call_ids(legacy) if isinstance(e, GuardVerdict)]
    assert owners == [None, "attachment-0", "c1", None]
    named = [*legacy[:2], GuardVerdict(stage="tool_result", guard="prompt_guard", decision="allow", call_id="x")]
    assert with_call_ids(named) == named  # a verdict that names its call keeps it


UNGUARDED = """\
version: 1
stages:
  user_input: {llama_guard: {enabled: false}, prompt_guard: {enabled: false}}
  model_output: {llama_guard: {enabled: false}, code_shield: {enabled: false}}
  tool_result: {prompt_guard: {enabled: false}}
audit: {path: audit.jsonl}
"""


async def test_the_session_lists_threads_and_warms_up_through_the_api(tmp_path: Path) -> None:
    policy = tmp_path / "policy.yaml"
    policy.write_text(UNGUARDED, encoding="utf-8")
    script = tmp_path / "model.jsonl"
    script.write_text('{"completion": "Hi.<|eot_id|>"}\n', encoding="utf-8")
    db = tmp_path / "threads.sqlite"
    await Assistant.from_policy(policy, model=f"scripted:{script}", db_path=db).arun("hello", thread="from-a-script")
    session = AssistantSession(policy, model=f"scripted:{script}", db_path=db)
    steps: list[LoadProgress] = []
    await session.load(steps.append)
    assert [(s.component, s.state) for s in steps if s.component == "main"][-1] == ("main", "ready")
    assert {s.component: s.state for s in steps if s.component != "main"} == {
        "llama_guard": "disabled",
        "prompt_guard": "disabled",
    }
    assert await session.known_threads() == ["from-a-script"]
    assert await session.history("from-a-script") == [("user", "hello"), ("assistant", "Hi.")]

"""Pure parts of the chat: event (de)serialisation, verdict summaries, markdown export, slash commands, store."""

from __future__ import annotations

from pathlib import Path

import pytest

from assistant.events import (
    ApprovalRequested,
    Error,
    Final,
    GuardVerdict,
    Notice,
    Refusal,
    TokenDelta,
    ToolCallProposed,
    ToolResult,
)
from assistant.tui.commands import BY_NAME, parse_slash, unescape
from assistant.tui.store import DEFAULT_TITLE, ChatStore, title_from
from assistant.tui.transcript import event_from_json, export_markdown, fold_turn, summarize

EVENTS = [
    GuardVerdict(stage="user_input", guard="prompt_guard", decision="allow", score=0.01, elapsed_ms=3.0),
    ToolCallProposed(call_id="c1", name="code_interpreter", arguments={"code": "print('```')"}),
    GuardVerdict(stage="code", guard="code_shield", decision="warn", reasons=("weak hash",), categories=("CWE-328",)),
    ApprovalRequested(call_id="c1", name="code_interpreter", arguments={"code": "x"}, reason="side effects"),
    ToolResult(call_id="c1", name="code_interpreter", ok=True, output="```\n", limits_hit=("cpu",)),
    TokenDelta(text="Done"),
    GuardVerdict(stage="model_output", guard="llama_guard", decision="allow", score=0.02),
    Notice(kind="context_trimmed", message="old turns dropped"),
    Final(text="Done.", thread_id="t"),
]


def test_events_round_trip_through_json() -> None:
    extra = [Refusal(stage="user_input", message="no", guard_error=True), Error(kind="model_backend", message="down")]
    for event in EVENTS + extra:
        assert event_from_json(event.to_json()) == event
    with pytest.raises(ValueError, match="unknown event type"):
        event_from_json({"type": "bogus"})


def test_summary_is_the_worst_verdict() -> None:
    allow = GuardVerdict(stage="s", guard="g", decision="allow")
    warn = GuardVerdict(stage="s", guard="g", decision="warn")
    block = GuardVerdict(stage="s", guard="g", decision="block")
    crashed = GuardVerdict(stage="s", guard="g", decision="allow", error="timeout")  # fail closed shows as blocked
    assert summarize([]) == "none"
    assert summarize([allow, allow]) == "passed"
    assert summarize([allow, warn]) == "warned"
    assert summarize([warn, block, allow]) == "blocked"
    assert summarize([crashed]) == "blocked"


def test_fold_turn_attaches_tool_verdicts_to_their_call() -> None:
    turn = fold_turn("hi", EVENTS)
    assert turn.answer == "Done."  # the Final text wins over the streamed deltas
    assert [v.guard for v in turn.input_verdicts] == ["prompt_guard"]
    assert [v.guard for v in turn.output_verdicts] == ["llama_guard"]
    (call,) = turn.tool_calls
    assert [v.guard for v in call.verdicts] == ["code_shield"]
    assert call.approval is not None and call.result is not None and call.result.output == "```\n"


def test_export_markdown_fences_survive_backticks_in_code() -> None:
    text = export_markdown("My chat", [fold_turn("hi", EVENTS)])
    assert text.startswith("# My chat\n\n## You\n\nhi\n\n_guards: passed (prompt_guard allow 0.01)_\n")
    assert "````json\n" in text or "```json\n" in text
    assert "````\n```\n\n````" in text  # the tool output holding ``` is fenced with four backticks
    assert "_guards: warned (code_shield warn)_" in text
    assert text.endswith("Done.\n\n_guards: passed (llama_guard allow 0.02)_\n")
    refused = export_markdown("t", [fold_turn("bad", [Refusal(stage="user_input", message="I can't help.")])])
    assert "> Refused at user_input: I can't help." in refused


@pytest.mark.parametrize(
    ("text", "name", "argument", "known"),
    [("/new", "new", "", True), ("  /export  out.md ", "export", "out.md", True), ("/Help", "Help", "", True),
     ("/bogus x", "bogus", "x", False)],
)
def test_parse_slash(text: str, name: str, argument: str, known: bool) -> None:
    call = parse_slash(text)
    assert call is not None and call.name == name and call.argument == argument
    assert (call.command is not None) is known


def test_plain_and_escaped_text_is_not_a_command() -> None:
    assert parse_slash("hello /new") is None
    assert parse_slash("//new is a path") is None
    assert unescape("//new is a path") == "/new is a path"
    assert set(BY_NAME) >= {"new", "policy", "tools", "clear", "export", "help"}


def test_store_threads_turns_titles(tmp_path: Path) -> None:
    store = ChatStore(tmp_path / "c.sqlite")
    store.add_turn("a", "What is the capital of France, and why is it Paris?", EVENTS)
    store.add_turn("b", "second", [Final(text="ok")])
    store.add_turn("a", "follow-up", [Final(text="ok")])
    threads = store.list_threads()
    assert [t.id for t in threads] == ["a", "b"]  # most recently updated first
    assert threads[0].title == "What is the capital of France, and why…" and threads[0].turns == 2
    assert store.turns("a")[0] == ("What is the capital of France, and why is it Paris?", EVENTS)
    store.rename("a", "  Geography \n")
    assert store.title("a") == "Geography"
    with pytest.raises(ValueError, match="empty"):
        store.rename("a", "   ")
    store.clear("a")
    assert store.turns("a") == [] and store.has_thread("a")
    store.delete("a")
    assert not store.has_thread("a") and store.title("a") == DEFAULT_TITLE
    store.close()
    reopened = ChatStore(tmp_path / "c.sqlite")
    assert [t.id for t in reopened.list_threads()] == ["b"]
    reopened.close()


def test_store_refuses_a_newer_schema(tmp_path: Path) -> None:
    import sqlite3

    path = tmp_path / "c.sqlite"
    with sqlite3.connect(path) as db:
        db.execute("PRAGMA user_version = 99")
    with pytest.raises(RuntimeError, match="newer version"):
        ChatStore(path)


def test_title_from() -> None:
    assert title_from("  two\nlines  ") == "two lines"
    assert len(title_from("x" * 100)) == 40


def test_errors_come_with_a_fix() -> None:
    from assistant.tui.errors import describe_error

    text = describe_error("model_backend", "connection refused: http://localhost:8000/v1")
    assert text.startswith("Error (model_backend): connection refused") and "base_url" in text
    assert "fails closed" in describe_error("guard", "timeout")
    assert "bug" in describe_error("something new", "x")  # unknown kinds still get a next step

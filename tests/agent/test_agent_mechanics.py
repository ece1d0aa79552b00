"""Graph mechanics with every guard switched off: retries, limits, approvals for the session, context trimming."""

from __future__ import annotations

from pathlib import Path

import pytest

from assistant.events import Error, Notice, Refusal, ToolResult

UNGUARDED = """\
version: 1
stages:
  user_input: {{llama_guard: {{enabled: false}}, prompt_guard: {{enabled: false}}}}
  model_output: {{llama_guard: {{enabled: false}}, code_shield: {{enabled: false}}}}
  tool_result: {{prompt_guard: {{enabled: false}}}}
  code: {{code_shield: {{enabled: false}}}}
models:
  main: {{context_window: {context_window}, max_new_tokens: 16}}
tools:
  approval_required: [send_email]
  untrusted_content: allow  # these tests are about approval_required; the untrusted rule: test_invariant.py
agent: {{max_steps: {max_steps}, max_tool_retries: 1}}
"""

CALL_EMAIL = '<|python_tag|>{"name": "send_email", "parameters": {"to": "bob@example.test", "body": "hi"}}<|eom_id|>'
BROKEN_CALL = '<|python_tag|>{"name": "send_email", "parameters": {"to": <|eom_id|>'


def unguarded(tmp_path: Path, *, max_steps: int = 6, context_window: int = 8192) -> Path:
    path = tmp_path / "unguarded.yaml"
    path.write_text(UNGUARDED.format(max_steps=max_steps, context_window=context_window), encoding="utf-8")
    return path


async def test_parse_error_goes_back_to_the_model_then_the_retry_limit_ends_the_turn(make_assistant, tmp_path) -> None:
    bot = make_assistant(BROKEN_CALL, "Sorry, no.<|eot_id|>", policy=unguarded(tmp_path))
    result = await bot.arun("email bob", thread="p1")
    assert result.text == "Sorry, no."
    history = await bot.history("p1")
    assert history[2]["role"] == "tool" and "could not be parsed" in history[2]["content"]

    bot = make_assistant(BROKEN_CALL, BROKEN_CALL, policy=unguarded(tmp_path))
    result = await bot.arun("email bob", thread="p2")
    assert isinstance(result.events[-1], Error) and result.events[-1].kind == "tool"


async def test_step_limit_ends_the_turn(make_assistant, tmp_path, tool_log) -> None:
    call = '<|python_tag|>{"name": "fetch_page", "parameters": {"name": "news"}}<|eom_id|>'
    bot = make_assistant(call, call, call, policy=unguarded(tmp_path, max_steps=2))
    result = await bot.arun("loop", thread="p3")
    assert isinstance(result.events[-1], Refusal) and "step limit" in result.events[-1].message
    assert len(tool_log.calls) == 2


async def test_approval_for_the_session_is_not_asked_again(make_assistant, tmp_path, tool_log) -> None:
    from assistant.agent.approval import APPROVE_SESSION

    asked: list[str] = []

    def approve(request):
        asked.append(request.name)
        return APPROVE_SESSION

    bot = make_assistant(CALL_EMAIL, "one<|eot_id|>", CALL_EMAIL, "two<|eot_id|>", policy=unguarded(tmp_path),
                         approve=approve)
    assert (await bot.arun("email", thread="p4")).text == "one"
    assert (await bot.arun("again", thread="p4")).text == "two"
    assert asked == ["send_email"]
    assert [n for n, _ in tool_log.calls] == ["send_email", "send_email"]


async def test_tool_error_goes_back_to_the_model(make_assistant, tmp_path) -> None:
    bad_args = '<|python_tag|>{"name": "send_email", "parameters": {"to": 5}}<|eom_id|>'
    bot = make_assistant(bad_args, "I could not send it.<|eot_id|>", policy=unguarded(tmp_path),
                         approve=lambda r: True)
    result = await bot.arun("email", thread="p5")
    assert result.text == "I could not send it."
    failed = [e for e in result.events if isinstance(e, ToolResult)]
    assert failed and not failed[0].ok and "invalid arguments" in failed[0].output


async def test_oldest_turns_are_dropped_when_the_prompt_is_too_long(make_assistant, tmp_path) -> None:
    long = "word " * 150
    policy = unguarded(tmp_path, context_window=520)
    bot = make_assistant("a<|eot_id|>", "b<|eot_id|>", "c<|eot_id|>", policy=policy)
    notices = []
    for i in range(3):
        result = await bot.arun(f"{i} {long}", thread="p6")
        assert result.text in {"a", "b", "c"}
        notices += [e for e in result.events if isinstance(e, Notice)]
    assert notices and notices[0].kind == "context_trimmed"
    assert len(await bot.history("p6")) == 6  # the stored thread keeps everything; only the prompt is trimmed


async def test_a_turn_too_long_for_the_window_is_bad_input(make_assistant, tmp_path) -> None:
    bot = make_assistant("never<|eot_id|>", policy=unguarded(tmp_path, context_window=300))
    result = await bot.arun("word " * 400, thread="p7")
    assert isinstance(result.events[-1], Error) and result.events[-1].kind == "bad_input"


async def test_new_message_while_an_approval_waits_is_refused(make_assistant, tmp_path) -> None:
    from assistant.agent.graph import ThreadBusy

    bot = make_assistant(CALL_EMAIL, policy=unguarded(tmp_path))
    assert (await bot.arun("email", thread="p8")).pending_approval is not None
    with pytest.raises(ThreadBusy):
        await bot.arun("something else", thread="p8")


async def test_delete_thread_forgets_it(make_assistant, tmp_path) -> None:
    bot = make_assistant("hi<|eot_id|>", policy=unguarded(tmp_path))
    await bot.arun("hello", thread="p9")
    assert len(await bot.history("p9")) == 2
    await bot.delete_thread("p9")
    assert await bot.history("p9") == []


async def test_approval_waits_across_a_restart_and_the_call_runs_once(make_assistant, tmp_path, tool_log) -> None:
    db = tmp_path / "restart.sqlite"
    first = make_assistant(CALL_EMAIL, policy=unguarded(tmp_path), db=db)
    paused = await first.arun("email", thread="p10")
    assert paused.pending_approval is not None and tool_log.calls == []

    second = make_assistant("Sent.<|eot_id|>", policy=unguarded(tmp_path), db=db)
    pending = await second.pending_approval("p10")
    assert pending.name == "send_email" and pending.call_id == paused.pending_approval.call_id
    result = await second.aresume("p10", True, call_id=pending.call_id)
    assert result.text == "Sent."
    assert [n for n, _ in tool_log.calls] == ["send_email"]
    assert [m["role"] for m in await second.history("p10")] == ["user", "assistant", "tool", "assistant"]

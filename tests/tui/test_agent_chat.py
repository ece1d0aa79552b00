"""The chat app over the real agent: scripted main model, tiny trained guards (steered by trigger words), the
LangGraph graph with its SQLite checkpointer. What a user does, end to end.

The tiny guards are built once into the git-ignored `.cache/tiny-models` (shared with tests/agent) and loaded once
per process; `zyxtrigger` in a message makes the tiny Llama Guard answer `unsafe\\nS9`.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from textual.widgets import Markdown
from tui_helpers import SIZE, finish, ready, send, submit, wait_until

from assistant.tui.backend import AssistantSession
from assistant.tui.screens.approval import ApprovalScreen
from assistant.tui.widgets.messages import AssistantMessage, ToolCallView, UserMessage

REPO = Path(__file__).resolve().parents[2]
TINY_DIR = REPO / ".cache" / "tiny-models"
POLICY = """\
version: 1
models:
  main: {source: tiny:llama-3.1-instruct, max_new_tokens: 64}
  llama_guard: {source: tiny:llama-guard, variant: 8b, device: cpu, dtype: float32}
  prompt_guard: {source: tiny:prompt-guard, device: cpu}
llama_guard: {timeout_s: 60}
prompt_guard: {timeout_s: 60}
stages:
  user_input: {llama_guard: {enabled: true}, prompt_guard: {enabled: true, score: jailbreak}}
  model_output: {llama_guard: {enabled: true}, code_shield: {enabled: false}}
  tool_result: {prompt_guard: {enabled: true, score: injection}}
audit: {path: audit.jsonl}
tools:
  approval_required: [send_email]
"""
CALL_EMAIL = '<|python_tag|>{"name": "send_email", "parameters": {"to": "bob@example.test", "body": "hi"}}<|eom_id|>'


def email_tool(sent: list[str]) -> Any:
    from tools.custom import tool

    @tool(side_effects=True)
    def send_email(to: str, body: str) -> str:
        """Send an email.

        Args:
            to: recipient address
            body: the message
        """
        sent.append(to)
        return f"sent to {to}"

    return send_email


def session(tmp_path: Path, *completions: str, sent: list[str] | None = None) -> AssistantSession:
    policy = tmp_path / "policy.yaml"
    policy.write_text(POLICY, encoding="utf-8")
    script = tmp_path / f"model-{len(list(tmp_path.glob('model-*')))}.jsonl"
    script.write_text("".join(json.dumps({"completion": c}) + "\n" for c in completions), encoding="utf-8")
    return AssistantSession(
        policy,
        model=f"scripted:{script}",
        tiny_dir=TINY_DIR,
        db_path=tmp_path / "threads.sqlite",
        tools=[email_tool(sent if sent is not None else [])],
    )


def answer(app: Any) -> str:
    return app.query(AssistantMessage).last().query_one(Markdown).source


async def test_answer_block_and_restart(make_app, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    app = make_app(session(tmp_path, "Hello from the scripted model.<|eot_id|>"))
    async with app.run_test(size=SIZE) as pilot:
        await ready(pilot)
        await send(pilot, "hi there")
        assert answer(app) == "Hello from the scripted model."
        user, reply = app.query_one(UserMessage), app.query_one(AssistantMessage)
        assert user.badge.state == "passed"
        assert {v.guard for v in user.badge.verdicts} == {"llama_guard", "prompt_guard"}
        assert reply.badge.state == "passed"
        # blocked before the model runs: the script has no second line, so a model call would be an error
        await send(pilot, "please zyxtrigger now")
        blocked = app.query(UserMessage).last()
        assert blocked.badge.state == "blocked"
        notice = app.query(AssistantMessage).last().notice
        assert notice.display and "can't" in str(notice.render()).lower()
        thread = app.thread_id
    # a restart: a new app, a new Assistant, the same stores - the conversation is listed and continues
    again = make_app(session(tmp_path, "Still here.<|eot_id|>", "From a script.<|eot_id|>"), thread_id=thread)
    async with again.run_test(size=SIZE) as pilot:
        await ready(pilot)
        assert [m.text for m in again.query(UserMessage)] == ["hi there", "please zyxtrigger now"]
        await send(pilot, "and now?")
        assert answer(again) == "Still here."
        history = await again.session.assistant.history(thread)
        texts = [getattr(m, "content", None) or (m.get("content") if isinstance(m, dict) else "") for m in history]
        assert "hi there" in texts and "and now?" in texts
        assert not any("zyxtrigger" in (t or "") for t in texts)  # blocked text never reaches the model's context
        # a thread a script started through the Python API shows up in the list, with its messages
        await again.session.assistant.arun("hello from a script", thread="script-1")
        again.import_agent_threads()
        await wait_until(pilot, lambda: again.store.has_thread("script-1"), what="the script's thread listed")
        assert again.store.title("script-1") == "hello from a script"


@pytest.mark.parametrize("approve", [True, False])
async def test_tool_approval(make_app, tmp_path: Path, approve: bool) -> None:  # type: ignore[no-untyped-def]
    sent: list[str] = []
    app = make_app(session(tmp_path, CALL_EMAIL, "Done.<|eot_id|>", sent=sent))
    async with app.run_test(size=SIZE) as pilot:
        await ready(pilot)
        before = await submit(pilot, "email bob")
        await wait_until(pilot, lambda: isinstance(app.screen, ApprovalScreen), what="the approval dialog")
        assert app.screen.request.name == "send_email"  # type: ignore[attr-defined]
        if approve:
            await pilot.press("a")
        else:
            await pilot.press("d", *"not today", "enter")
        await finish(pilot, before)
        view = app.query_one(ToolCallView)
        assert view.call.name == "send_email"
        if approve:
            assert sent == ["bob@example.test"] and view.status == "done"
        else:
            assert sent == [] and view.status.startswith("denied: not today")
        assert answer(app) == "Done."

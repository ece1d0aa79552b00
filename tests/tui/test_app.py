"""The real chat app, driven with Pilot over a scripted fake session: what the user sees and what gets saved."""

from __future__ import annotations

import asyncio
from pathlib import Path

from fake_session import FakeSession, blocked_turn, tool_turn
from textual.command import CommandList
from textual.widgets import Input, Markdown
from tui_helpers import SIZE, finish, ready, send, submit, wait_until

from assistant.events import ApprovalRequested, Final, TokenDelta
from assistant.tui.conversations import RESUME_TEXT
from assistant.tui.screens.approval import ApprovalScreen
from assistant.tui.screens.dialogs import DocumentScreen
from assistant.tui.session import SetupProblem
from assistant.tui.widgets.conversations import ConversationList
from assistant.tui.widgets.messages import AssistantMessage, ToolCallView, UserMessage


def answer_text(app) -> str:  # type: ignore[no-untyped-def]
    return app.query(AssistantMessage).last().query_one(Markdown).source


async def test_message_gets_streamed_answer_with_verdict_badges(make_app) -> None:  # type: ignore[no-untyped-def]
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await ready(pilot)
        await send(pilot, "hello")
        user = app.query_one(UserMessage)
        reply = app.query_one(AssistantMessage)
        assert user.text == "hello"
        assert answer_text(app) == "Hello! **How** can I help?"
        assert user.badge.state == "passed"
        assert [v.guard for v in user.badge.verdicts] == ["prompt_guard", "llama_guard"]
        assert reply.badge.state == "passed" and "✔ guards passed" in str(reply.badge.title)
        # details on demand: expanding the badge shows each guard's score and latency
        assert user.badge.collapsed
        user.badge.collapsed = False
        await pilot.pause()
        details = str(user.badge.query_one(".verdict-details").render())
        assert "prompt_guard: allow · score 0.00 · 12 ms" in details
    assert app.store.list_threads()[0].title == "hello"


async def test_blocked_message_shows_refusal_and_blocked_badge(make_app) -> None:  # type: ignore[no-untyped-def]
    app = make_app(FakeSession(turns=[blocked_turn]))
    async with app.run_test(size=SIZE) as pilot:
        await ready(pilot)
        await send(pilot, "something bad")
        user = app.query_one(UserMessage)
        reply = app.query_one(AssistantMessage)
        assert user.badge.state == "blocked"
        assert user.badge.has_class("blocked")
        assert "S2" in str(user.badge.query_one(".verdict-details").render())
        assert reply.notice.display and "I can't help with that request." in str(reply.notice.render())
        assert not reply.answer.display  # no answer text at all


async def test_approval_accepted_runs_the_tool(make_app) -> None:  # type: ignore[no-untyped-def]
    app = make_app(FakeSession(turns=[tool_turn]))
    async with app.run_test(size=SIZE) as pilot:
        await ready(pilot)
        before = await submit(pilot, "compute")
        await wait_until(pilot, lambda: isinstance(app.screen, ApprovalScreen), what="the approval dialog")
        view = app.query_one(ToolCallView)
        assert view.status == "waiting for approval"
        await pilot.press("a")
        await finish(pilot, before)
        assert view.status == "done"
        assert "42" in str(view.result_view.render())
        assert answer_text(app) == "The answer is 42."


async def test_approval_denied_with_reason_for_the_model(make_app) -> None:  # type: ignore[no-untyped-def]
    session = FakeSession(turns=[tool_turn])
    app = make_app(session)
    async with app.run_test(size=SIZE) as pilot:
        await ready(pilot)
        before = await submit(pilot, "compute")
        await wait_until(pilot, lambda: isinstance(app.screen, ApprovalScreen), what="the approval dialog")
        await pilot.press("d", *"not now, ask me again", "enter")  # keyboard only: d focuses the reason
        await finish(pilot, before)
        view = app.query_one(ToolCallView)
        assert view.status == "denied: not now, ask me again"
        assert "denied: not now, ask me again" in str(view.result_view.render())
        assert answer_text(app) == "I did not run the code, as you asked."


async def test_input_waits_for_the_guards(make_app) -> None:  # type: ignore[no-untyped-def]
    gate = asyncio.Event()
    app = make_app(FakeSession(gate=gate))
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        prompt = app.query_one("#prompt")
        assert prompt.disabled and "Waiting for the guards" in prompt.placeholder
        assert app.query_one("#loading").display
        assert app.query_one("#load-main").status.render().plain.startswith("loading")  # type: ignore[attr-defined]
        gate.set()
        await ready(pilot)
        assert not prompt.disabled and app.focused is prompt
        assert not app.query_one("#loading").display


async def test_switch_conversations_and_resume_after_restart(make_app) -> None:  # type: ignore[no-untyped-def]
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await ready(pilot)
        await send(pilot, "first topic")
        first = app.thread_id
        await pilot.press("ctrl+n")
        await pilot.pause()
        assert app.thread_id != first and not app.query(UserMessage)
        await send(pilot, "second topic")
        await pilot.press("ctrl+b")  # the conversation list
        conversations = app.query_one(ConversationList)
        await wait_until(pilot, lambda: len(conversations.children) == 2, what="two conversations listed")
        assert app.focused is conversations
        await pilot.press("down", "enter")  # the older one
        await wait_until(pilot, lambda: app.thread_id == first, what="switch to the first conversation")
        assert [m.text for m in app.query(UserMessage)] == ["first topic"]
    # a restart (a new app on the same store) finds the conversation, verdicts included
    again = make_app(thread_id=first)
    async with again.run_test(size=SIZE) as pilot:
        await ready(pilot)
        user = again.query_one(UserMessage)
        assert user.text == "first topic" and user.badge.state == "passed"
        assert answer_text(again) == "Hello! **How** can I help?"
        assert [t.title for t in again.store.list_threads()] == ["second topic", "first topic"]


async def test_rename_and_delete_from_the_list(make_app) -> None:  # type: ignore[no-untyped-def]
    session = FakeSession()
    app = make_app(session)
    async with app.run_test(size=SIZE) as pilot:
        await ready(pilot)
        await send(pilot, "keep me")
        await pilot.press("ctrl+b")
        await pilot.press("f2")
        await wait_until(pilot, lambda: app.screen.query("#prompt-input"), what="rename dialog")
        app.screen.query_one("#prompt-input", Input).value = "Renamed"
        await pilot.press("enter")
        await wait_until(pilot, lambda: app.store.title(app.thread_id) == "Renamed", what="rename")
        assert "Renamed" in app.title
        deleted = app.thread_id
        app.query_one(ConversationList).focus()
        await pilot.press("delete")
        await wait_until(pilot, lambda: app.screen.query("#confirm"), what="delete confirmation")
        await pilot.click("#confirm")
        await wait_until(pilot, lambda: not app.store.list_threads(), what="deletion")
        assert session.forgotten == [deleted] and app.thread_id != deleted


async def test_slash_commands(make_app, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    session = FakeSession()
    app = make_app(session)
    async with app.run_test(size=SIZE) as pilot:
        await ready(pilot)
        await send(pilot, "hello")
        for command, title in (("/policy", "Effective policy: fake.yaml"), ("/tools", "Tools"), ("/help", "Help")):
            await pilot.press(*command, "enter")
            await wait_until(pilot, lambda: isinstance(app.screen, DocumentScreen), what=command)
            assert app.screen.doc_title == title  # type: ignore[attr-defined]
            if command == "/tools":
                assert "code_interpreter" in app.screen.markdown  # type: ignore[attr-defined]
            await pilot.press("escape")
            await wait_until(pilot, lambda: not isinstance(app.screen, DocumentScreen), what="close")
        target = tmp_path / "out.md"
        app.query_one("#prompt").value = f"/export {target}"
        await pilot.press("enter")
        await wait_until(pilot, target.exists, what="export")
        assert target.read_text().startswith("# hello\n\n## You\n\nhello\n")
        await pilot.press(*"/clear", "enter")
        await wait_until(pilot, lambda: not app.query(UserMessage), what="clear")
        assert session.forgotten == [app.thread_id] and app.store.turns(app.thread_id) == []
        await pilot.press(*"/nope", "enter")
        await pilot.pause()
        assert app.query_one("#prompt").value == ""  # unknown command: a notice, nothing sent
        assert not app.query(UserMessage)


async def test_command_palette_offers_the_same_actions(make_app) -> None:  # type: ignore[no-untyped-def]
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await ready(pilot)
        await pilot.press("ctrl+p")
        await pilot.press(*"effective policy")
        hits = app.screen.query_one(CommandList)
        await wait_until(pilot, lambda: hits.option_count > 0, what="palette hits")
        assert "Show the effective policy" in str(hits.get_option_at_index(0).prompt)
        await pilot.press("enter")
        await wait_until(pilot, lambda: isinstance(app.screen, DocumentScreen), what="policy from the palette")


async def test_setup_problem_offers_the_offline_policy(make_app) -> None:  # type: ignore[no-untyped-def]
    problem = SetupProblem("Missing model: Model", "meta-llama/X is not downloaded", "hf download meta-llama/X")
    offline = FakeSession(policy_name="offline-smoke.yaml")
    app = make_app(FakeSession(problem=problem), offline_session=lambda: offline, offline_hint="tiny models")
    async with app.run_test(size=SIZE) as pilot:
        await wait_until(pilot, lambda: bool(app.screen.query("#setup-title")), what="the setup screen")
        text = str(app.screen.query_one("#setup-fix").render())
        assert "hf download meta-llama/X" in text
        assert app.screen.query("#offline")
        await pilot.press("o")
        await ready(pilot)
        assert app.session is offline and "offline-smoke.yaml" in app.sub_title
        await send(pilot, "hi")
        assert answer_text(app).startswith("Hello!")


async def test_pending_approval_from_an_earlier_session_is_asked_again(make_app) -> None:  # type: ignore[no-untyped-def]
    request = ApprovalRequested(call_id="c9", name="code_interpreter", arguments={"code": "1"}, reason="needs approval")
    session = FakeSession(pending={"t-old": request})
    app = make_app(session, thread_id="t-old")
    async with app.run_test(size=SIZE) as pilot:
        await wait_until(pilot, lambda: isinstance(app.screen, ApprovalScreen), what="the pending approval")
        await pilot.press("a")
        await wait_until(pilot, lambda: app.turns_completed == 1, what="the resumed turn")
        assert answer_text(app) == "Resumed."
        assert app.query_one(ToolCallView).status == "done"
        assert session.pending == {}
    assert [text for text, _ in app.store.turns("t-old")] == [RESUME_TEXT]


async def test_unexpected_error_is_shown_not_raised(make_app) -> None:  # type: ignore[no-untyped-def]
    async def broken(text, approve):  # type: ignore[no-untyped-def]
        raise RuntimeError("backend exploded")
        yield  # pragma: no cover

    app = make_app(FakeSession(turns=[broken]))
    async with app.run_test(size=SIZE) as pilot:
        await ready(pilot)
        await send(pilot, "hi")
        notice = str(app.query_one(AssistantMessage).notice.render())
        assert "RuntimeError" in notice and "backend exploded" in notice and "chat.log" in notice
        assert "Traceback" not in notice
        await send(pilot, "again")  # the app still works
        assert len(app.query(AssistantMessage)) == 2


async def test_view_follows_the_stream_unless_the_user_scrolled_up(make_app) -> None:  # type: ignore[no-untyped-def]
    from textual.containers import VerticalScroll

    paragraphs = [f"Paragraph {i} of a long answer.\n\n" for i in range(30)]
    halfway = asyncio.Event()

    async def slow(text, approve):  # type: ignore[no-untyped-def]
        for index, paragraph in enumerate(paragraphs):
            if index == 15:
                await halfway.wait()
            yield TokenDelta(text=paragraph)
        yield Final(text="".join(paragraphs))

    app = make_app(FakeSession(turns=[slow, slow]))
    async with app.run_test(size=SIZE) as pilot:
        await ready(pilot)
        chat = app.query_one("#chat", VerticalScroll)
        before = await submit(pilot, "first")
        await wait_until(pilot, lambda: "Paragraph 14" in answer_text(app), what="half the answer")
        await pilot.wait_for_scheduled_animations()
        assert chat.max_scroll_y > 0 and chat.scroll_y == chat.max_scroll_y  # following the stream
        chat.focus()
        await pilot.press("pageup")  # the user scrolls up to read
        await pilot.wait_for_scheduled_animations()
        held = chat.scroll_y
        halfway.set()
        await finish(pilot, before)
        assert chat.scroll_y == held < chat.max_scroll_y  # the rest streamed in without moving the view
        halfway.clear()
        before = await submit(pilot, "second")  # sending a message jumps back to the bottom and follows again
        halfway.set()
        await finish(pilot, before)
        assert chat.scroll_y == chat.max_scroll_y


async def test_multi_line_messages_and_pasted_code_keep_their_lines(make_app) -> None:  # type: ignore[no-untyped-def]
    from textual import events

    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await ready(pilot)
        prompt = app.query_one("#prompt")
        await pilot.press(*"look:", "ctrl+j")
        app.post_message(events.Paste("def f():\n    return 1\n"))  # as the terminal delivers a paste
        await pilot.pause()
        assert prompt.value == "look:\ndef f():\n    return 1\n"
        before = app.turns_completed
        await pilot.press("enter")
        await finish(pilot, before)
        assert app.query_one(UserMessage).text == "look:\ndef f():\n    return 1"
        assert prompt.value == ""


async def test_links_in_answers_are_copied_not_opened(make_app) -> None:  # type: ignore[no-untyped-def]
    from functools import partial

    from fake_session import answer_turn

    app = make_app(FakeSession(turns=[partial(answer_turn, answer="See [this](https://evil.test/x) now.")]))
    opened: list[str] = []
    app.open_url = lambda url, **kwargs: opened.append(url)  # type: ignore[method-assign]
    async with app.run_test(size=SIZE) as pilot:
        await ready(pilot)
        await send(pilot, "links?")
        answer = app.query_one(AssistantMessage).answer
        answer.post_message(Markdown.LinkClicked(answer, "https://evil.test/x"))
        await wait_until(pilot, lambda: app.clipboard == "https://evil.test/x", what="the link copied")
        assert opened == []


async def test_code_shield_findings_are_shown_with_the_code(make_app) -> None:  # type: ignore[no-untyped-def]
    from fake_session import code_shield_turn

    app = make_app(FakeSession(turns=[code_shield_turn]))
    async with app.run_test(size=SIZE) as pilot:
        await ready(pilot)
        await send(pilot, "evaluate my input")
        view = app.query_one(ToolCallView)
        assert view.status == "blocked" and view.has_class("blocked") and not view.collapsed
        code, findings = view.query_one(".code"), view.findings
        assert findings.display and "insecure-eval-use (CWE-95)" in str(findings.render())
        assert code.region.y < findings.region.y  # the findings sit right under the code
        assert "blocked by the policy" in str(app.query_one(AssistantMessage).notice.render())


async def test_threads_started_outside_the_chat_are_listed_and_shown(make_app) -> None:  # type: ignore[no-untyped-def]
    from assistant.tui.conversations import EXTERNAL_TEXT

    history = [("user", "Summarise the report"), ("assistant", "It says **three** things.")]
    app = make_app(FakeSession(agent_threads={"from-cli": history}))
    async with app.run_test(size=SIZE) as pilot:
        await ready(pilot)
        await wait_until(pilot, lambda: app.store.has_thread("from-cli"), what="the agent's thread listed")
        assert app.store.title("from-cli") == "Summarise the report"
        await send(pilot, "a chat of my own")
        assert [t.id for t in app.store.list_threads()][-1] == "from-cli"  # imported threads sort last
        await app.switch_thread("from-cli")
        await wait_until(pilot, lambda: bool(app.query(UserMessage)), what="the history shown")
        assert [m.text for m in app.query(UserMessage)] == ["Summarise the report"]
        reply = app.query_one(AssistantMessage)
        assert reply.text == "It says **three** things." and EXTERNAL_TEXT in str(reply.query_one(".info").render())

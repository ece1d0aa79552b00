"""SVG snapshots of the main screens (Textual's own export). Compared with the committed files in snapshots/.

A missing snapshot is written (and the test passes); set UPDATE_SNAPSHOTS=1 to rewrite them after a deliberate
change. On a mismatch the new rendering is saved next to the old one as NAME.actual.svg for a side-by-side look.
"""

from __future__ import annotations

import asyncio
import os
import re
from pathlib import Path
from typing import Any

from fake_session import FakeSession, blocked_turn, tool_turn
from tui_helpers import finish, ready, send, submit, wait_until

from assistant.tui.screens.approval import ApprovalScreen
from assistant.tui.session import SetupProblem
from assistant.tui.widgets.messages import ToolCallView, UserMessage

SNAPSHOTS = Path(__file__).parent / "snapshots"
SIZE = (100, 36)
THREAD = "snapshot0001"


def _normalise(svg: str) -> str:
    # Rich names its CSS classes after a hash of the whole export, so one changed cell renames every class;
    # compare without those names so a diff shows the cells that changed.
    return re.sub(r"terminal-\d+", "terminal", svg)


def assert_snapshot(app: Any, name: str) -> None:
    svg = app.export_screenshot(title=name)
    path = SNAPSHOTS / f"{name}.svg"
    actual = SNAPSHOTS / f"{name}.actual.svg"
    if os.environ.get("UPDATE_SNAPSHOTS") or not path.exists():
        SNAPSHOTS.mkdir(exist_ok=True)
        path.write_text(svg, encoding="utf-8")
        actual.unlink(missing_ok=True)
        return
    if _normalise(path.read_text(encoding="utf-8")) != _normalise(svg):
        actual.write_text(svg, encoding="utf-8")
        raise AssertionError(f"{name} differs from {path}; see {actual} (UPDATE_SNAPSHOTS=1 accepts it)")
    actual.unlink(missing_ok=True)


async def test_snapshot_conversation(make_app) -> None:  # type: ignore[no-untyped-def]
    app = make_app(FakeSession(turns=[tool_turn, blocked_turn]), thread_id=THREAD)
    async with app.run_test(size=SIZE) as pilot:
        await ready(pilot)
        before = await submit(pilot, "What is 6 * 7? Use code.")
        await wait_until(pilot, lambda: isinstance(app.screen, ApprovalScreen), what="the approval dialog")
        await pilot.wait_for_scheduled_animations()
        assert_snapshot(app, "approval_dialog")
        await pilot.click("#approve-once")
        await finish(pilot, before)
        await send(pilot, "something bad")
        app.query(UserMessage).last().badge.collapsed = False  # verdict details on demand
        app.query_one(ToolCallView).collapsed = False
        await pilot.press("ctrl+b")
        await pilot.wait_for_scheduled_animations()
        assert_snapshot(app, "conversation")


async def test_snapshot_loading(make_app) -> None:  # type: ignore[no-untyped-def]
    gate = asyncio.Event()
    app = make_app(FakeSession(gate=gate, guard_fraction=0.25), thread_id=THREAD)
    async with app.run_test(size=SIZE) as pilot:
        await wait_until(pilot, lambda: app.query_one("#load-llama_guard").state == "loading", what="loading")
        # The footer recomposes its keys after the first refresh; a loaded machine can take the snapshot before.
        await wait_until(pilot, lambda: bool(app.screen.query("FooterKey")), what="the footer's keys")
        await pilot.wait_for_scheduled_animations()
        await pilot.pause()
        assert_snapshot(app, "loading")
        gate.set()


async def test_snapshot_setup_problem(make_app) -> None:  # type: ignore[no-untyped-def]
    problem = SetupProblem(
        "Missing models: Model, Llama Guard",
        "The built-in default policy needs:\n• Model: meta-llama/Llama-3.1-8B-Instruct - it is not downloaded.",
        "• accept the license on https://huggingface.co/meta-llama/Llama-3.1-8B-Instruct, then: hf download ...",
    )
    app = make_app(
        FakeSession(problem=problem), thread_id=THREAD, offline_session=FakeSession, offline_hint="--policy x.yaml"
    )
    async with app.run_test(size=SIZE) as pilot:
        await wait_until(pilot, lambda: bool(app.screen.query("#setup-title")), what="the setup screen")
        await pilot.wait_for_scheduled_animations()
        assert_snapshot(app, "setup_problem")

"""Pilot helpers for the chat tests: app-level waits instead of sleeps."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

SIZE = (100, 34)


async def wait_until(pilot: Any, predicate: Callable[[], bool], *, what: str = "condition", steps: int = 400) -> None:
    """Let the app process messages until `predicate` holds (no sleeps: each step waits for the app to be idle)."""
    for _ in range(steps):
        if predicate():
            return
        await pilot.pause()
    raise AssertionError(f"timed out waiting for {what}")


async def ready(pilot: Any) -> None:
    """Wait until the guards are loaded and the input accepts text."""
    await wait_until(pilot, lambda: pilot.app.guards_ready, what="guards ready")


async def submit(pilot: Any, text: str) -> int:
    """Type a message into the input and press enter; returns the number of turns finished before it."""
    app = pilot.app
    before = app.turns_completed
    app.query_one("#prompt").focus()
    await pilot.press(*text)
    await pilot.press("enter")
    return before


async def finish(pilot: Any, before: int) -> None:
    await wait_until(pilot, lambda: pilot.app.turns_completed > before, what="the turn to finish")
    await pilot.wait_for_scheduled_animations()


async def send(pilot: Any, text: str) -> None:
    """Send a message and wait for its turn (and the widgets it updates) to finish."""
    await finish(pilot, await submit(pilot, text))


async def command(pilot: Any, text: str) -> None:
    """Type a slash command and press enter (no turn to wait for)."""
    await submit(pilot, text)
    await pilot.pause()

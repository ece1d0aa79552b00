"""Pilot helpers for the chat tests: app-level waits instead of sleeps."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

SIZE = (100, 34)


async def wait_until(
    pilot: Any, predicate: Callable[[], bool], *, what: str = "condition", steps: int = 400, seconds: float = 30.0
) -> None:
    """Let the app process messages until `predicate` holds: `steps` waits for the app to be idle, then, on a loaded
    machine where the app's worker threads run late (make test runs two workers), short sleeps up to `seconds`."""
    deadline = time.monotonic() + seconds
    step = 0
    while not predicate():
        if step >= steps and time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await pilot.pause(None if step < steps else 0.05)
        step += 1


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

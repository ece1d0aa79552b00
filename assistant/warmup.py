"""Loading the models now instead of on first use (`Assistant.warm_up`), side by side on worker threads, with each
one's progress for a UI: the main model's backend and every guard runner the policy enables (their `load()`)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Literal

from guards.runtime.runner import GuardRunner
from model.backends.base import LoadEvent, ModelBackend

MAIN_MODEL = "main"  # `WarmUp.name` of the main model (the others are guard names)


@dataclass(frozen=True)
class WarmUp:
    """One model's state: `name` is MAIN_MODEL or a guard's (a key of `pipeline.runners`); `detail` and `fraction`
    (0..1, None when unknown) come from the main model's backend; `error` when it failed."""

    name: str
    state: Literal["loading", "ready", "failed"]
    detail: str = ""
    fraction: float | None = None
    error: BaseException | None = None


Progress = Callable[[WarmUp], None]


async def warm_up(backend: ModelBackend, runners: Mapping[str, GuardRunner], progress: Progress | None = None) -> None:
    """Load the backend and every runner side by side; `progress` hears each one's state on the event loop's thread:
    `loading` (the main model's with its backend's own progress), then `ready` or `failed`. The first failure is
    raised at once (the other loads go on in their threads, no longer reported)."""
    loop = asyncio.get_running_loop()
    report: Progress = progress or (lambda _: None)
    loads = {MAIN_MODEL: backend.load, **{name: runner.load for name, runner in runners.items()}}

    def backend_progress(event: LoadEvent) -> None:  # called on the loading thread
        loop.call_soon_threadsafe(report, WarmUp(MAIN_MODEL, "loading", event.message, event.fraction))

    async def warm(name: str, load: Callable[[], object]) -> None:
        report(WarmUp(name, "loading"))
        try:
            await asyncio.to_thread(load)
        except Exception as exc:
            report(WarmUp(name, "failed", str(exc), error=exc))
            raise
        report(WarmUp(name, "ready"))

    previous = backend.on_progress
    if progress is not None:
        backend.on_progress = backend_progress
    tasks = [asyncio.ensure_future(warm(name, load)) for name, load in loads.items()]
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
    finally:
        for task in tasks:
            task.cancel()
        backend.on_progress = previous
    for task in tasks:
        if task.done() and not task.cancelled() and (error := task.exception()) is not None:
            raise error

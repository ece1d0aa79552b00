"""Generation that runs ahead of the guards: started before its prompt was cleared, consumed only if it was.

The input guards (and the tool-result guards) decide whether the model may see a text, but on a free core the model
can already prefill and decode while they run. A `Generation` buffers the deltas of one `backend.stream` call in
a background task; nothing reads them until the node that owns the turn takes it with `take(prompt_ids)`, which only
succeeds for exactly the prompt the guarded conversation produces. Anything else - a block, a notice in place of a
blocked tool result, a trimmed window, the end of the run - cancels it, and its text reaches no event, no state and
no tool. The backend keeps no KV cache of a cancelled call; a cache that did record the unchecked text is only ever
reused for an identical prefix, which a blocked text never has again.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from typing import Any

from model import telemetry
from model.backends.base import GenerationParams, ModelBackend

_END = object()
FIRST_TOKEN = "gen_ai.server.time_to_first_token"  # seconds, as the GenAI metric of that name measures it


class ModelCallError(RuntimeError):
    """The model call failed in a way the backend did not report itself: it stopped producing text (past
    `models.main.timeout_s`), yielded something that is not text, or cancelled its own work. The turn then ends as a
    `model_backend` error instead of hanging or escaping as an internal error."""


class Generation:
    """One `backend.stream(prompt_ids, params)` running in a task, its deltas queued until read."""

    def __init__(self, backend: ModelBackend, prompt_ids: list[int], params: GenerationParams, *,
                 speculative: bool = False) -> None:
        self.prompt_ids = list(prompt_ids)
        self.params = params
        self._queue: asyncio.Queue[object] = asyncio.Queue()
        # the model call's span (a child of the current step of the turn), ended with the call; None when not tracing
        self.trace = None if telemetry.current() is None else telemetry.child(
            f"chat {model_name(backend)}", call_attributes(backend, self, speculative))
        self._task = asyncio.ensure_future(self._pump(backend))

    async def _pump(self, backend: ModelBackend) -> None:
        traced = self.trace is not None
        started, deltas, calls = time.perf_counter(), 0, backend.stats.calls if traced else 0
        failure: BaseException | None = None
        try:
            async for delta in backend.stream(self.prompt_ids, self.params):
                if deltas == 0 and traced:
                    telemetry.annotate(self.trace, {FIRST_TOKEN: time.perf_counter() - started})
                deltas += 1
                self._queue.put_nowait(delta)
        except asyncio.CancelledError as exc:
            failure = exc
            task = asyncio.current_task()
            if task is not None and task.cancelling():
                raise  # cancelled by us: nobody reads this generation any more
            self._queue.put_nowait(ModelCallError("the model backend cancelled its own work mid-stream"))
        except Exception as exc:  # handed to the reader, which reports it as a model error
            failure = exc
            self._queue.put_nowait(exc)
        finally:
            self._queue.put_nowait(_END)
            if traced:
                telemetry.end(self.trace, usage(backend, calls, deltas), error=failure)

    async def deltas(self) -> AsyncIterator[str]:
        while True:
            item = await self._queue.get()
            if item is _END:
                return
            if isinstance(item, BaseException):
                raise item
            yield item  # type: ignore[misc]  # as the backend gave it: the reader rejects anything but text

    async def cancel(self) -> None:
        """Stop generating (the backend stops at its next token) and drop whatever was buffered."""
        if not self._task.done():
            self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await self._task
        while not self._queue.empty():
            self._queue.get_nowait()


class SpeculationSlot:
    """Holds at most one speculative generation for the run of one turn (in the run's `TurnContext`, with the
    incoming message, so it is never checkpointed)."""

    def __init__(self) -> None:
        self._generation: Generation | None = None

    async def start(self, backend: ModelBackend, prompt_ids: list[int], params: GenerationParams) -> None:
        await self.discard()
        self._generation = Generation(backend, prompt_ids, params, speculative=True)

    async def take(self, prompt_ids: list[int], params: GenerationParams) -> Generation | None:
        """The running generation when it was started for exactly this prompt and these settings; else None (and
        the stale one is cancelled)."""
        generation, self._generation = self._generation, None
        if generation is None:
            return None
        if generation.prompt_ids == list(prompt_ids) and generation.params == params:
            return generation
        await generation.cancel()
        return None

    async def discard(self) -> None:
        generation, self._generation = self._generation, None
        if generation is not None:
            await generation.cancel()


def model_name(backend: ModelBackend) -> str:
    """The model a backend serves, from its `name` (`transformers:PATH`, `openai:URL#model`, `scripted:FILE`)."""
    spec = backend.name.split(":", 1)[-1]
    return spec.rsplit("#", 1)[-1] if "#" in spec else spec.rstrip("/").rsplit("/", 1)[-1]


def call_attributes(backend: ModelBackend, generation: Generation, speculative: bool) -> dict[str, Any]:
    """A model call's span attributes (OpenTelemetry GenAI conventions): no prompt text, only its size."""
    params = generation.params
    return {
        "gen_ai.operation.name": "chat",
        "gen_ai.provider.name": backend.name.split(":", 1)[0],
        "gen_ai.request.model": model_name(backend),
        "gen_ai.request.max_tokens": params.max_new_tokens,
        "gen_ai.request.temperature": params.temperature,
        "gen_ai.request.top_p": params.top_p,
        "gen_ai.usage.input_tokens": len(generation.prompt_ids),
        "assistant.speculative": speculative,  # started ahead of the guards (used only if they pass its prompt)
    }


def usage(backend: ModelBackend, calls_before: int, deltas: int) -> dict[str, Any]:
    """What the call produced: its deltas, and the backend's own token counts when they are this call's (no other
    call of the backend finished meanwhile)."""
    stats = backend.stats
    out: dict[str, Any] = {"assistant.model.deltas": deltas}
    if stats.calls == calls_before + 1 and stats.last_generated_tokens:
        out["gen_ai.usage.output_tokens"] = stats.last_generated_tokens
        out["assistant.model.cached_tokens"] = stats.last_cached_tokens
    return out

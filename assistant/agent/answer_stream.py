"""One model call, consumed as it streams: tool calls are held whole, answers are shown chunk by chunk as their
output-guard checks pass (streaming moderation), or at once when no output guard is enabled.

`AnswerStream.consume` reads the deltas (bounded by `models.main.timeout_s` before the first delta and between
two), decides early whether the completion is an answer (`looks_like_answer`), and for an answer feeds the text to
`ChunkedModeration`, releasing each chunk that passed; the first check that stops the turn cancels the generation and
raises `AnswerBlocked`. After the completion is parsed, `finish` checks and releases the rest of an answer, and
`abandon` drops pending checks when the completion turned out to be a tool call. Text is released only in these
two places, and only after the check that covers it passed.

When the stage runs Code Shield, streaming stops at the first code fence: the text before it streams as above, and
the rest is released only after the whole stage passed on the whole answer (a code block split into chunks would
hide its code from Code Shield).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from assistant.agent.model_call import ModelCallError
from assistant.agent.streaming import ChunkedModeration, looks_like_answer
from assistant.events import Event, TokenDelta

STOPS = ("<|eot_id|>", "<|eom_id|>", "<|end_of_text|>")
PYTHON_TAG = "<|python_tag|>"
FENCE = "```"
PASSTHROUGH_CHARS = 16  # an unchecked answer is released in pieces of at least this size (one event per token is
# a measurable cost of its own, and no reader sees the difference)


class AnswerBlocked(Exception):
    """A chunk of the streamed answer failed the output guards; `result` is that check's StageResult."""

    def __init__(self, result: Any) -> None:
        super().__init__("the output guards stopped the answer")
        self.result = result


def answer_text(completion: str) -> str:
    """The part of a (partial) completion that may be shown as an answer: before any stop token or python tag."""
    for marker in (PYTHON_TAG, *STOPS):
        index = completion.find(marker)
        if index >= 0:
            completion = completion[:index]
    return completion


class AnswerStream:
    def __init__(
        self,
        check: Callable[[str], Any],  # async: text -> StageResult of the model_output stage
        emit: Callable[[Event], None],
        on_result: Callable[[Any], None],  # emits a check's verdicts
        stops: Callable[[Any], bool],
        *,
        moderated: bool,  # the model_output stage has guards
        streaming: bool,  # the policy's streaming moderation is on
        code_shield: bool,  # the stage runs Code Shield
        chunk_chars: int,
        lookback_chars: int,
    ) -> None:
        self._check = check
        self._emit = emit
        self._on_result = on_result
        self._stops = stops
        self.moderated = moderated
        self.enabled = streaming or not moderated  # without output guards the answer streams as it comes
        self.code_shield = code_shield
        self._moderation = ChunkedModeration(check, chunk_chars=chunk_chars, lookback_chars=lookback_chars)
        self._released = 0  # characters of the answer shown so far
        self.streaming = False  # decided: this completion is an answer and is being streamed

    async def consume(self, generation: Any, idle_timeout_s: float) -> str:
        """The whole completion. Raises AnswerBlocked, ModelCallError or the backend's exception."""
        pieces: list[str] = []
        decided: bool | None = None if self.enabled else False
        iterator = aiter(generation.deltas())
        try:
            while True:
                try:
                    delta = await asyncio.wait_for(anext(iterator), idle_timeout_s)
                except StopAsyncIteration:
                    break
                except TimeoutError:
                    raise ModelCallError(
                        f"the model produced no text for {idle_timeout_s:g} s (models.main.timeout_s); the call was "
                        "abandoned"
                    ) from None
                if not isinstance(delta, str):
                    raise ModelCallError(f"the model backend yielded {type(delta).__name__}, not text")
                pieces.append(delta)
                if decided is None:
                    decided = looks_like_answer("".join(pieces))
                    self.streaming = bool(decided)
                if decided:
                    self._advance(answer_text("".join(pieces)), final=False)
                    self._release_ready()
        except BaseException:
            await generation.cancel()
            await self._moderation.cancel()
            raise
        return "".join(pieces)

    def _streamable(self, text: str) -> str:
        if self.code_shield and self.moderated:
            fence = text.find(FENCE)
            if fence >= 0:
                return text[:fence]
        return text

    def _advance(self, text: str, *, final: bool) -> None:
        text = self._streamable(text)
        if not self.moderated:  # nothing to check: shown as generated, a few tokens per event
            if len(text) - self._released >= PASSTHROUGH_CHARS or (final and len(text) > self._released):
                self._emit(TokenDelta(text=text[self._released :]))
                self._released = len(text)
            return
        self._moderation.feed(text, final=final)

    def _release_ready(self) -> None:
        for chunk, result in self._moderation.ready():
            self._accept(chunk, result)

    def _accept(self, chunk: str, result: Any) -> None:
        self._on_result(result)
        if self._stops(result):
            raise AnswerBlocked(result)
        self._emit(TokenDelta(text=chunk))
        self._released += len(chunk)

    async def finish(self, answer: str) -> None:
        """Check and release the rest of a streamed answer; raises AnswerBlocked at the first check that stops it."""
        try:
            self._advance(answer, final=True)
            while (item := await self._moderation.next()) is not None:
                self._accept(*item)
            if self._released < len(answer):  # held after a code fence: the whole stage on the whole answer
                result = await self._check_whole(answer)
                self._on_result(result)
                if self._stops(result):
                    raise AnswerBlocked(result)
                self._emit(TokenDelta(text=answer[self._released :]))
                self._released = len(answer)
        finally:
            await self._moderation.cancel()

    async def _check_whole(self, answer: str) -> Any:
        return await self._check(answer)

    async def abandon(self) -> None:
        await self._moderation.cancel()

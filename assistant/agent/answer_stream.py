"""One model call, consumed as it streams; the only route by which answer text reaches the user.

`AnswerStream.consume` reads the deltas into a `CompletionBuilder` (bounded by `models.main.timeout_s` before the
first delta and between two; nothing after the first real stop token is kept). A completion that starts like a tool
call is held whole; one that reads as prose streams: at every `chunk_chars` of new text a check judges the whole
answer so far (with its conversation), and the text up to that point is released once its check passed. After the
completion is parsed, `finish` judges the whole answer (the last check always covers all of it) and releases the
rest; with streaming moderation off that one check is the only one. `abandon` drops pending checks when the
completion turned out to be a tool call. Every check is `guards.runtime.gate.judge` on the `completion` path.

Cost: consecutive checks share their prompt up to the previous answer-so-far, so Llama Guard's cache of its last
check (guards/llama_guard/guard.py) prefills only the new text: the work of all checks stays linear in the answer
length.

When the stage runs Code Shield, streaming stops at the first code fence (``` or ~~~, three or more, as CommonMark
accepts; a last line that may still become one is held too): the rest is released only after the whole answer
passed, so a code block is always scanned whole.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
from collections import deque
from typing import Protocol

from assistant.agent.speculation import Generation, ModelCallError
from guards.runtime.gate import Judgement
from model.completion import Completion, CompletionBuilder

PASSTHROUGH_CHARS = 16  # an unchecked answer is released in pieces of at least this size (one event per token is
# a measurable cost of its own, and no reader sees the difference)
RELEASE_CHARS = 64  # piece size of an answer released at once, so consumers render it like a stream
DECIDE_CHARS = 24  # non-space characters seen before deciding that a completion is an answer
# Held, not streamed: a completion that starts like a tool call (the parser decides, once it is whole).
_TOOL_HEAD = re.compile(r"\s*(?:[{\[<]|[A-Za-z_]\w*\.call\()")
_FENCE = re.compile(r"^ {0,3}(?:`{3,}|~{3,})", re.MULTILINE)
_MAYBE_FENCE = re.compile(r" {0,3}(?:`{1,}|~{1,})?")  # a last line that may still become a fence opener



class AnswerGate(Protocol):
    """What an answer passes on its way to the user: the agent's is `nodes.CompletionGate`."""

    async def check(self, text: str) -> Judgement:
        """Judge the answer so far (`text`) on the completion path."""
        ...

    def on_judgement(self, judgement: Judgement) -> None:
        """Each check's judgement, in answer order, before its text is released (the agent shows its verdicts)."""
        ...

    def release(self, text: str) -> None:
        """Show `text`, the next piece of the answer: every character of it passed a check (or nothing checks)."""
        ...


class AnswerBlocked(Exception):
    """A check of the streamed answer stopped it; `judgement` is that check's."""

    def __init__(self, judgement: Judgement) -> None:
        super().__init__("the output guards stopped the answer")
        self.judgement = judgement


def looks_like_answer(text: str) -> bool | None:
    """True: stream it as an answer; False: hold it (a tool call, maybe); None: too early to say."""
    if _TOOL_HEAD.match(text):
        return False
    if len(text.strip()) >= DECIDE_CHARS:
        return True
    return None


def before_code(text: str) -> str:
    """The text before its first code fence, and before a last line that may still open one."""
    fence = _FENCE.search(text)
    if fence is not None:
        return text[: fence.start()]
    line_start = text.rfind("\n") + 1
    return text[:line_start] if _MAYBE_FENCE.fullmatch(text[line_start:]) else text


class AnswerStream:
    def __init__(
        self, gate: AnswerGate, *, moderated: bool, streaming: bool, code_shield: bool, chunk_chars: int,
        first_chunk_chars: int | None = None,
    ) -> None:
        if chunk_chars < 1 or (first_chunk_chars is not None and first_chunk_chars < 1):
            raise ValueError("chunk_chars and first_chunk_chars must be >= 1")
        self._gate = gate
        self.moderated = moderated  # the model_output stage has guards
        self.enabled = streaming or not moderated  # without output guards the answer streams as it comes
        self.code_shield = code_shield and moderated
        self.chunk_chars = chunk_chars
        self.first_chunk_chars = first_chunk_chars or chunk_chars  # a smaller first check: the first text shows sooner
        self._pending: deque[tuple[int, asyncio.Future[Judgement]]] = deque()  # (end, check of answer[:end])
        self._scheduled = 0  # the answer up to here has a check scheduled
        self._released = 0  # characters of the answer shown so far
        self._text = ""  # the answer so far
        self.streaming = False  # decided: this completion is an answer and is being streamed

    async def consume(self, generation: Generation, idle_timeout_s: float) -> Completion:
        """What is kept of the completion. Raises AnswerBlocked, ModelCallError or the backend's exception."""
        builder = CompletionBuilder()
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
                if builder.stopped:  # after the first stop token: dropped unread, generation stopped
                    builder.add(delta)
                    await generation.cancel()
                    break
                builder.add(delta)
                if decided is None:
                    decided = looks_like_answer(builder.text)
                    self.streaming = bool(decided)
                if decided:
                    self._advance(builder.answer_text(), final=False)
                    self._release_ready()
        except BaseException:
            await generation.cancel()
            await self.abandon()
            raise
        return builder.result()

    def _advance(self, text: str, *, final: bool) -> None:
        self._text = text  # the answer so far (it only grows)
        if self.code_shield and not final:
            text = before_code(text)
        if not self.moderated:  # nothing to check: shown as generated, a few tokens per event
            if len(text) - self._released >= PASSTHROUGH_CHARS or (final and len(text) > self._released):
                self._gate.release(text[self._released :])
                self._released = len(text)
            return
        while len(text) - self._scheduled >= (size := self.chunk_chars if self._scheduled else self.first_chunk_chars):
            end = self._scheduled + size
            # end at a word boundary: a released chunk never shows the start of a cut word
            space = max(text.rfind(" ", self._scheduled, end), text.rfind("\n", self._scheduled, end))
            end = space + 1 if space >= self._scheduled else end
            self._pending.append((end, asyncio.ensure_future(self._gate.check(text[:end]))))
            self._scheduled = end

    def _release_ready(self) -> None:
        while self._pending and self._pending[0][1].done():
            end, future = self._pending.popleft()
            self._accept(future.result(), self._text[:end])

    def _accept(self, judgement: Judgement, text: str) -> None:
        self._gate.on_judgement(judgement)
        if not judgement.passed:
            raise AnswerBlocked(judgement)
        if len(text) > self._released:
            self._gate.release(text[self._released :])
            self._released = len(text)

    async def finish(self, answer: str) -> Judgement:
        """Judge the whole answer (after the streamed checks still pending) and release the rest of it in pieces;
        raises AnswerBlocked at the first check that stops it, else returns the last judgement (the answer's record
        in the thread). Without output guards: the rest as generated, then the path's (guardless) judgement."""
        if not self.moderated:
            self._advance(answer, final=True)
            judgement = await self._gate.check(answer)
            if not judgement.passed:
                raise AnswerBlocked(judgement)
            return judgement
        try:
            while self._pending:
                end, future = self._pending.popleft()
                self._accept(await future, answer[:end])
            judgement = await self._gate.check(answer)
            self._gate.on_judgement(judgement)
            if not judgement.passed:
                raise AnswerBlocked(judgement)
            for start in range(self._released, len(answer), RELEASE_CHARS):
                self._gate.release(answer[start : start + RELEASE_CHARS])
            self._released = len(answer)
            return judgement
        finally:
            await self.abandon()

    async def abandon(self) -> None:
        futures = [future for _, future in self._pending]
        self._pending.clear()
        for future in futures:
            future.cancel()
        for future in futures:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await future

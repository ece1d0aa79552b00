"""One turn in the chat: streamed from the session and shown as it comes (`render.render_event`), saved to the chat's
store, stopped by esc (closing the stream cancels the turn), and the approval dialog for its tool calls. A base of
`ChatApp`, between it and `ConversationsApp`."""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import time
from collections.abc import AsyncGenerator, Callable, Sequence
from dataclasses import replace
from typing import Any

from rich.text import Text
from textual import work
from textual.containers import VerticalScroll

from assistant.attachments import Attachment
from assistant.events import ApprovalRequested, Error, Event, ToolCallProposed
from assistant.images import ImagesRefused
from assistant.stopped import stopped_event
from assistant.tui.conversations import RESUME_TEXT, ConversationsApp
from assistant.tui.errors import describe_error, unexpected
from assistant.tui.images import thumbnail
from assistant.tui.render import final_text, mark_unchecked, render_event
from assistant.tui.screens.approval import ApprovalScreen
from assistant.tui.session import ApprovalDecision, SessionError
from assistant.tui.widgets.messages import AssistantMessage, UserMessage
from model.images import ImageData

_APPROVAL_TEXT = {"once": "approved once", "session": "approved for this session", "deny": "denied"}


class TurnsApp(ConversationsApp):
    turns_completed: int
    stop_requested_at: float | None
    last_stop_s: float | None
    _turn_task: asyncio.Task[None] | None
    _stop_pending: bool

    @work(group="turn")
    async def run_turn(
        self, text: str, attachments: Sequence[Attachment] = (), images: Sequence[ImageData] = ()
    ) -> None:
        thread_id = self.thread_id

        def open_stream() -> AsyncGenerator[Event, None]:
            extra: dict[str, Sequence[Any]] = {}  # sessions written before attachments (images) take no such argument
            if attachments:
                extra["attachments"] = attachments
            if images:
                extra["images"] = images
            return self.session.stream(text, thread_id=thread_id, approve=self._approve, **extra)

        shown = [(image.label, await asyncio.to_thread(_thumbnail, image)) for image in images]
        await self._consume(thread_id, text, [], open_stream, keep_stopped=True, images=shown)

    @work(group="turn")
    async def resume_pending(self) -> None:
        """A tool call of this conversation that still waits for a decision (the app was closed on the dialog)."""
        thread_id = self.thread_id
        try:
            request = await self.session.pending_approval(thread_id)
        except Exception as exc:
            self.notify(unexpected("looking for a pending approval", exc), severity="warning", timeout=10)
            return
        if request is None or self.busy or thread_id != self.thread_id:
            return
        proposed = ToolCallProposed(call_id=request.call_id, name=request.name, arguments=request.arguments)
        decisions: list[ApprovalDecision] = []

        async def resumed() -> AsyncGenerator[Event, None]:
            decisions.append(await self._approve(request))
            async for event in self.session.resume(thread_id, decisions[0], approve=self._approve):
                yield event

        await self._consume(thread_id, RESUME_TEXT, [proposed, request], resumed)

    async def _consume(
        self, thread_id: str, text: str, prelude: list[Event], open_stream: Callable[[], AsyncGenerator[Event, None]],
        *, keep_stopped: bool = False, images: list[tuple[str, Text | None]] | None = None,
    ) -> None:
        """Show one turn as it streams, then save it. Every failure ends up on screen, never as a traceback.
        A stop (esc) cancels this task: closing the stream cancels the turn (generation, guards, a running sandbox);
        what was shown stays, marked stopped, and the thread keeps it too (`keep_stopped`, new messages only)."""
        self.busy = True
        chat = self.query_one("#chat", VerticalScroll)
        user, reply = UserMessage(text, images=images), AssistantMessage()
        await chat.mount_all([user, reply])
        reply.show_notice(f"{reply.phase}…", "pending")
        chat.anchor()
        events: list[Event] = []
        started = time.monotonic()

        def tick() -> None:
            if reply.notice.has_class("pending"):
                reply.notice.update(f"{reply.phase}… {time.monotonic() - started:.0f} s")

        timer = self.set_interval(1.0, tick)
        stopped = False
        self._turn_task = task = asyncio.current_task()
        if self._stop_pending and task is not None:  # esc right after enter: stop before anything runs
            self._stop_pending = False
            task.cancel()
        try:
            for event in prelude:
                events.append(event)
                await render_event(event, user, reply, live=True)
            # aclosing: a stop that lands while an event renders still closes the stream (and so the turn) now
            async with contextlib.aclosing(open_stream()) as stream:
                async for event in stream:
                    events.append(event)
                    await render_event(event, user, reply, live=True)
        except asyncio.CancelledError:
            if self._exit or not self.is_running:
                raise  # the app is closing: end at once (the turn so far is still saved below)
            stopped = True
            events.append(stopped_event((time.monotonic() - started) * 1000))
            await render_event(events[-1], user, reply, live=True)
        except ImagesRefused as exc:  # before anything ran: nothing was sent
            labels = ", ".join(label for label, _ in images or [])
            refused = Error(kind="images", message=f"the images were not sent ({labels}): {exc}")
            events.append(refused)
            reply.show_notice(describe_error(refused.kind, refused.message), "error")
        except SessionError as exc:
            events.append(Error(kind="setup", message=f"{exc.problem.message}\n{exc.problem.fix}"))
            reply.show_notice(f"{exc.problem.title}: {exc.problem.message}\n{exc.problem.fix}", "error")
        except Exception as exc:
            message = unexpected("turn", exc)
            events.append(Error(kind="internal", message=message))
            reply.show_notice(message, "error")
        finally:
            # Saved first: when the app closes mid-turn (the dialog open), what happened so far is kept.
            timer.stop()
            self._turn_task = None
            try:
                self.store.add_turn(thread_id, text, events)
            except sqlite3.Error as exc:
                self.notify(f"This turn could not be saved ({exc}); check the disk.", severity="error", timeout=15)
            self.busy = False
            if self.is_running and not self._exit:
                await reply.finish(final_text(events))
                mark_unchecked(user, reply, resumed=text == RESUME_TEXT, stopped=stopped)
                if reply.notice.has_class("pending"):
                    reply.notice.display = False
                await self._refresh_list()
                self._update_title()
            if stopped:
                self._stopped(thread_id)
            else:  # a stop that came as the turn ended on its own: nothing to stop any more
                self.stop_requested_at, self._stop_pending = None, False
            self.turns_completed += 1
        if stopped and keep_stopped:
            try:
                await self.session.keep_stopped(thread_id, text, events)
            except Exception as exc:
                self.notify(unexpected("keeping the stopped answer", exc), severity="warning", timeout=10)

    def _stopped(self, thread_id: str) -> None:
        if self.stop_requested_at is not None:
            self.last_stop_s = time.monotonic() - self.stop_requested_at
            self.stop_requested_at = None
            self.notify(f"Stopped in {self.last_stop_s * 1000:.0f} ms.", timeout=4)

    async def _approve(self, request: ApprovalRequested) -> ApprovalDecision:
        """Ask the user; works from any task on the app's loop (a future, not push_screen_wait)."""
        future: asyncio.Future[ApprovalDecision] = asyncio.get_running_loop().create_future()

        def done(decision: ApprovalDecision | None) -> None:
            if not future.done():
                future.set_result(decision or ApprovalDecision("deny", "The user closed the dialog."))

        self.push_screen(ApprovalScreen(request), callback=done)
        decision = replace(await future, call_id=request.call_id)  # bound to the call shown, nothing else
        for reply in self.query(AssistantMessage):
            if (view := reply.tool_views.get(request.call_id)) is not None:
                suffix = f": {decision.reason}" if decision.kind == "deny" and decision.reason else ""
                view.approval_given(_APPROVAL_TEXT[decision.kind] + suffix)
        return decision


def _thumbnail(image: ImageData) -> Text | None:
    """The image's thumbnail; None (the label line alone) when it cannot be drawn: it was checked and decoded when
    attached, so this is not expected, and a picture is not worth failing the turn for."""
    try:
        return thumbnail(image)
    except (OSError, ValueError):
        return None

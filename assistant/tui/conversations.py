"""The chat's conversations: showing one (replayed from the chat's store, or as the agent's messages when the chat
did not record it), listing the agent's own threads (`ChatSession.known_threads`: `Assistant.list_threads` on the
configured store), renaming, deleting, clearing and exporting. A base of `ChatApp`, which owns the widgets."""

from __future__ import annotations

from pathlib import Path

from textual import on, work
from textual.app import App
from textual.containers import VerticalScroll

from assistant.stopped import is_stopped
from assistant.tui.errors import unexpected
from assistant.tui.render import mark_unchecked, render_event
from assistant.tui.screens.dialogs import ConfirmScreen, PromptScreen
from assistant.tui.session import ChatSession
from assistant.tui.store import ChatStore, new_thread_id, title_from
from assistant.tui.transcript import export_markdown, fold_turn, with_call_ids
from assistant.tui.widgets.conversations import ConversationList
from assistant.tui.widgets.messages import AssistantMessage, UserMessage

EXTERNAL_TEXT = "Started outside the chat: the guard verdicts of this turn were not recorded here."
RESUME_TEXT = "(resumed: a tool call from an earlier session waits for your decision)"


class ConversationsApp(App[None]):
    session: ChatSession
    store: ChatStore
    thread_id: str
    loaded: bool
    busy: bool
    export_dir: Path | None

    async def _show_thread(self, thread_id: str) -> None:
        self.thread_id = thread_id
        chat = self.query_one("#chat", VerticalScroll)
        await chat.remove_children()
        for user_text, events in self.store.turns(thread_id):
            user, reply = UserMessage(user_text), AssistantMessage()
            await chat.mount_all([user, reply])
            for event in with_call_ids(events):  # turns stored before verdicts named their call
                await render_event(event, user, reply, live=False)
            await reply.finish(fold_turn(user_text, events).answer)
            mark_unchecked(user, reply, resumed=user_text == RESUME_TEXT, stopped=is_stopped(events))
        if self.loaded and not chat.children:
            await self._show_agent_history(thread_id)
        chat.anchor()
        await self._refresh_list()
        self._update_title()

    @work(group="import")
    async def import_agent_threads(self) -> None:
        """List the agent's threads that the chat did not start (`assistant run`, the Python API), at the bottom."""
        try:
            await self._import_agent_threads()
        except Exception as exc:  # the chat works without them; say so, keep the traceback in the log
            self.notify(unexpected("listing the agent's conversations", exc), severity="warning", timeout=10)

    async def _import_agent_threads(self) -> None:
        added = False
        for thread_id in await self.session.known_threads():
            if not self.store.has_thread(thread_id):
                history = await self.session.history(thread_id)
                first = next((text for role, text in history if role == "user"), f"thread {thread_id}")
                self.store.ensure_thread(thread_id, title_from(first), updated_at=0.0)
                added = True
        if added:
            await self._refresh_list()
        if not self.query_one("#chat", VerticalScroll).children:
            await self._show_agent_history(self.thread_id)

    async def _show_agent_history(self, thread_id: str) -> None:
        """A thread the chat did not record: its messages as the model sees them (no verdicts were recorded)."""
        try:
            history = await self.session.history(thread_id)
        except Exception as exc:
            self.notify(unexpected("reading the conversation", exc), severity="warning", timeout=10)
            return
        if not history or thread_id != self.thread_id:
            return
        chat = self.query_one("#chat", VerticalScroll)
        reply: AssistantMessage | None = None
        for role, text in history:
            if role == "user":
                reply = AssistantMessage()
                await chat.mount_all([UserMessage(text), reply])
                await reply.add_info(EXTERNAL_TEXT)
            elif reply is not None:
                await reply.finish(f"{reply.text}\n\n{text}".strip())
        chat.anchor()

    def _update_title(self) -> None:
        self.title = f"Guarded assistant · {self.store.title(self.thread_id)}"

    async def _refresh_list(self) -> None:
        await self.query_one(ConversationList).show(self.store.list_threads(), self.thread_id)

    @on(ConversationList.Rename)
    def _on_rename(self, message: ConversationList.Rename) -> None:
        self._ask_rename(message.thread_id)

    @on(ConversationList.Delete)
    def _on_delete(self, message: ConversationList.Delete) -> None:
        self._ask_delete(message.thread_id)

    def _ask_rename(self, thread_id: str) -> None:
        def done(title: str | None) -> None:
            if title:
                self._rename(thread_id, title)

        self.push_screen(PromptScreen("Rename the conversation", self.store.title(thread_id)), callback=done)

    def _rename(self, thread_id: str, title: str) -> None:
        self.store.ensure_thread(thread_id)
        self.store.rename(thread_id, title)
        self._update_title()
        self.run_worker(self._refresh_list(), group="list")

    def _ask_delete(self, thread_id: str) -> None:
        async def done(confirmed: bool | None) -> None:
            if confirmed:
                await self.delete_thread(thread_id)

        question = f"Delete the conversation {self.store.title(thread_id)!r}? This cannot be undone."
        self.push_screen(ConfirmScreen(question), callback=done)

    async def delete_thread(self, thread_id: str) -> None:
        if self.busy and thread_id == self.thread_id:
            self.notify("Wait for the current answer before deleting.", severity="warning")
            return
        await self.session.forget_thread(thread_id)
        self.store.delete(thread_id)
        if thread_id == self.thread_id:
            remaining = self.store.list_threads()
            await self._show_thread(remaining[0].id if remaining else new_thread_id())
        else:
            await self._refresh_list()
        self.notify("Conversation deleted.")

    def action_rename_current(self) -> None:
        self._ask_rename(self.thread_id)

    def action_delete_current(self) -> None:
        self._ask_delete(self.thread_id)

    def action_export(self) -> None:
        self.export(None)

    def export(self, path: Path | None) -> Path | None:
        turns = [fold_turn(text, events) for text, events in self.store.turns(self.thread_id)]
        if not turns:
            self.notify("Nothing to export yet.", severity="warning")
            return None
        target = path or (self.export_dir or Path.cwd()) / f"conversation-{self.thread_id}.md"
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(export_markdown(self.store.title(self.thread_id), turns), encoding="utf-8")
        except OSError as exc:
            self.notify(f"Could not write {target}: {exc.strerror or exc}", severity="error")
            return None
        self.notify(f"Exported to {target}")
        return target

    async def action_clear(self) -> None:
        if self.busy:
            self.notify("Wait for the current answer first.", severity="warning")
            return
        await self.session.forget_thread(self.thread_id)
        self.store.clear(self.thread_id)
        await self._show_thread(self.thread_id)
        self.notify("Conversation cleared.")

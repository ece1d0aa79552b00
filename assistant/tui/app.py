"""The chat app. It takes its backend (a ChatSession) and its conversation store in the constructor."""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import threading
import time
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import replace
from pathlib import Path

from textual import on, work
from textual.app import App, ComposeResult
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.widgets import Footer, Header, Label, ListView, Markdown, Static

from assistant.events import ApprovalRequested, Error, Event, ToolCallProposed
from assistant.stopped import is_stopped, stopped_event
from assistant.tui.attachments import Attachment, AttachmentError, read_attachment
from assistant.tui.commands import BY_NAME, help_markdown, palette_provider, parse_slash, tools_markdown, unescape
from assistant.tui.errors import unexpected
from assistant.tui.keymap import APP_KEYS, KeymapResult, bindings
from assistant.tui.render import final_text, mark_unchecked, render_event
from assistant.tui.screens.approval import ApprovalScreen
from assistant.tui.screens.dialogs import ConfirmScreen, DocumentScreen, PromptScreen
from assistant.tui.screens.pickers import FilePickerScreen, SearchScreen
from assistant.tui.screens.setup import SetupScreen
from assistant.tui.session import ApprovalDecision, ChatSession, LoadProgress, SessionError, SetupProblem
from assistant.tui.store import ChatStore, new_thread_id, title_from
from assistant.tui.transcript import export_markdown, fold_turn
from assistant.tui.widgets.conversations import ConversationList
from assistant.tui.widgets.loading import LoadingPanel
from assistant.tui.widgets.messages import AssistantMessage, UserMessage
from assistant.tui.widgets.prompt import PromptArea

EXTERNAL_TEXT = "Started outside the chat: the guard verdicts of this turn were not recorded here."
RESUME_TEXT = "(resumed: a tool call from an earlier session waits for your decision)"
READY_PLACEHOLDER = "Message the assistant · enter sends, ctrl+j new line · /help for commands, ctrl+p palette"
WAITING_PLACEHOLDER = "Waiting for the guards to load…"
_CHAT_ACTIONS = {spec.action for spec in APP_KEYS}
_APPROVAL_TEXT = {"once": "approved once", "session": "approved for this session", "deny": "denied"}


class ChatApp(App[None]):
    CSS_PATH = "chat.tcss"
    TITLE = "Guarded assistant"
    BINDINGS = bindings(APP_KEYS)
    COMMANDS = App.COMMANDS | {palette_provider()}

    def __init__(
        self,
        session: ChatSession,
        store: ChatStore,
        *,
        thread_id: str | None = None,
        offline_session: Callable[[], ChatSession] | None = None,
        offline_hint: str = "",
        keymap: KeymapResult | None = None,
        export_dir: Path | None = None,
    ) -> None:
        super().__init__()
        self.session = session
        self.store = store
        self.thread_id = thread_id or new_thread_id()
        self.offline_session = offline_session
        self.offline_hint = offline_hint
        self.keymap_result = keymap or KeymapResult({})
        self.export_dir = export_dir
        self.busy = False
        self.turns_completed = 0  # lets tests (and scripts) wait for a turn without sleeping
        self.guards_ready = False
        self.loaded = False
        self.problem: SetupProblem | None = None
        self.attachments: list[Attachment] = []  # go with the next message
        self.stop_requested_at: float | None = None
        self._turn_task: asyncio.Task[None] | None = None  # the task showing the running turn (what esc cancels)
        self._stop_pending = False  # esc came before that task started
        self.last_stop_s: float | None = None  # key press to a quiet screen, for the last stop (shown, measured)

    def compose(self) -> ComposeResult:
        yield Header()
        with Horizontal(id="main"):
            with Vertical(id="sidebar"):
                yield Label("Conversations", id="sidebar-title")
                yield ConversationList(id="conversations")
            with Vertical(id="center"):
                yield LoadingPanel()
                yield VerticalScroll(id="chat")
                yield Static("", id="attachments", markup=False)
                yield PromptArea(placeholder=WAITING_PLACEHOLDER, id="prompt", disabled=True)
        yield Footer()

    async def on_mount(self) -> None:
        if self.keymap_result.keymap:
            self.set_keymap(self.keymap_result.keymap)
        for problem in self.keymap_result.problems:
            self.notify(problem, title="Keymap ignored", severity="warning", timeout=10)
        self.query_one("#sidebar").display = False
        self.query_one("#attachments").display = False
        await self._show_thread(self.thread_id)
        self.start_loading()

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        """While the start screen explains a setup problem, only its own keys (and quit) apply."""
        return not (isinstance(self.screen, SetupScreen) and action in _CHAT_ACTIONS)

    # Loading -------------------------------------------------------------------------------------------------

    def start_loading(self) -> None:
        self.guards_ready = False
        self.loaded = False
        self._set_input_ready(False)
        self.sub_title = f"policy: {self.session.policy_name}"
        self._load()

    @work(exclusive=True, group="load")
    async def _load(self) -> None:
        try:
            await self.session.load(self._report_progress)
            self.loaded = True
            self.resume_pending()
            self.import_agent_threads()
        except SessionError as exc:
            self._show_problem(exc.problem)
        except Exception as exc:
            self._show_problem(SetupProblem("The assistant could not start", unexpected("loading", exc), "", False))

    def _report_progress(self, progress: LoadProgress) -> None:
        if self._thread_id != threading.get_ident():
            self.call_from_thread(self._report_progress, progress)
            return
        panel = self.query_one(LoadingPanel)
        panel.apply(progress)
        if panel.guards_ready() and not self.guards_ready:
            self.guards_ready = True
            self._set_input_ready(True)

    def _set_input_ready(self, ready: bool) -> None:
        prompt = self.query_one("#prompt", PromptArea)
        prompt.disabled = not ready
        prompt.placeholder = READY_PLACEHOLDER if ready else WAITING_PLACEHOLDER
        if ready:
            prompt.focus()

    def _show_problem(self, problem: SetupProblem) -> None:
        if self.offline_session is None:
            problem = replace(problem, offer_offline=False)
        self.problem = problem
        self.push_screen(SetupScreen(problem, self.offline_hint), callback=self._on_setup_choice)

    def _on_setup_choice(self, choice: str | None) -> None:
        self.problem = None
        if choice == "offline" and self.offline_session is not None:
            self.session = self.offline_session()
            self.offline_session = None
            self.notify(f"Switched to the policy {self.session.policy_name}.")
            self.start_loading()
        elif choice == "retry":
            self.start_loading()
        else:
            self.exit()

    # Sending -------------------------------------------------------------------------------------------------

    @on(PromptArea.Submitted, "#prompt")
    async def _on_submit(self, event: PromptArea.Submitted) -> None:
        text = event.value
        if not text.strip():
            return
        call = parse_slash(text)
        if call is not None:
            event.area.value = ""
            if call.command is None:
                self.notify(f"Unknown command /{call.name}. Type /help for the list.", severity="warning")
            else:
                await self.run_command(call.command.name, call.argument)
            return
        if self.busy:
            self.notify("Wait for the current answer first.", severity="warning")
            return
        event.area.value = ""
        self.busy = True  # at once: a second enter before the worker starts must not start a second turn
        attachments, self.attachments = self.attachments, []
        self._show_attachments()
        self.run_turn(unescape(text).strip(), attachments)

    async def run_command(self, name: str, argument: str = "") -> None:
        if name == "export":
            self.export(Path(argument).expanduser() if argument else None)
        elif name == "rename" and argument:
            self._rename(self.thread_id, argument)
        elif name == "attach" and argument:
            self.attach(Path(argument).expanduser())
        elif name == "search" and argument:
            self.open_search(argument)
        else:
            await self.run_action(BY_NAME[name].action)

    @work(group="turn")
    async def run_turn(self, text: str, attachments: Sequence[Attachment] = ()) -> None:
        thread_id = self.thread_id

        def open_stream() -> AsyncIterator[Event]:
            if not attachments:  # sessions written before attachments existed take no such argument
                return self.session.stream(text, thread_id=thread_id, approve=self._approve)
            return self.session.stream(text, thread_id=thread_id, approve=self._approve, attachments=attachments)

        await self._consume(thread_id, text, [], open_stream, keep_stopped=True)

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

        async def resumed() -> AsyncIterator[Event]:
            decisions.append(await self._approve(request))
            async for event in self.session.resume(thread_id, decisions[0], approve=self._approve):
                yield event

        await self._consume(thread_id, RESUME_TEXT, [proposed, request], resumed)

    async def _consume(
        self, thread_id: str, text: str, prelude: list[Event], open_stream: Callable[[], AsyncIterator[Event]],
        *, keep_stopped: bool = False,
    ) -> None:  # fmt: skip
        """Show one turn as it streams, then save it. Every failure ends up on screen, never as a traceback.
        A stop (esc) cancels this task: closing the stream cancels the turn (generation, guards, a running sandbox);
        what was shown stays, marked stopped, and the thread keeps it too (`keep_stopped`, new messages only)."""
        self.busy = True
        chat = self.query_one("#chat", VerticalScroll)
        user, reply = UserMessage(text), AssistantMessage()
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
        self._turn_task = asyncio.current_task()
        if self._stop_pending:  # esc right after enter: stop before anything runs
            self._stop_pending = False
            self._turn_task.cancel()  # type: ignore[union-attr]
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

    @on(Markdown.LinkClicked)
    def _on_link(self, event: Markdown.LinkClicked) -> None:
        self.copy_to_clipboard(event.href)
        self.notify(f"Copied {event.href}\nLinks in answers are not opened for you: they can come from untrusted text.")

    # Conversations -------------------------------------------------------------------------------------------

    async def _show_thread(self, thread_id: str) -> None:
        self.thread_id = thread_id
        chat = self.query_one("#chat", VerticalScroll)
        await chat.remove_children()
        for user_text, events in self.store.turns(thread_id):
            user, reply = UserMessage(user_text), AssistantMessage()
            await chat.mount_all([user, reply])
            for event in events:
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

    @on(ListView.Selected, "#conversations")
    async def _on_select(self, event: ListView.Selected) -> None:
        info = getattr(event.item, "info", None)
        if info is not None and info.id != self.thread_id:
            await self.switch_thread(info.id)

    async def switch_thread(self, thread_id: str) -> None:
        if self.busy:
            self.notify("Wait for the current answer before switching.", severity="warning")
            return
        await self._show_thread(thread_id)
        if self.loaded:
            self.resume_pending()
        if not self.query_one("#prompt", PromptArea).disabled:
            self.query_one("#prompt", PromptArea).focus()

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

    # Actions (keys, slash commands and the palette) ----------------------------------------------------------

    async def action_new_conversation(self) -> None:
        await self.switch_thread(new_thread_id())

    def action_toggle_conversations(self) -> None:
        sidebar = self.query_one("#sidebar")
        sidebar.display = not sidebar.display
        if sidebar.display:
            self.query_one(ConversationList).focus()

    def action_stop(self) -> None:
        """esc: stop the running turn; with none running, put the cursor in the message box."""
        if not self.busy:
            self.action_focus_input()
            return
        if self.stop_requested_at is not None:
            return  # already stopping
        self.stop_requested_at = time.monotonic()
        if isinstance(self.screen, ApprovalScreen):
            self.screen.dismiss(None)  # its question goes with the turn
        if self._turn_task is not None:
            self._turn_task.cancel()
        else:
            self._stop_pending = True  # the turn's worker has not started yet: it stops as it starts

    def action_attach(self) -> None:
        def done(path: Path | None) -> None:
            if path is not None:
                self.attach(path)

        self.push_screen(FilePickerScreen(Path.cwd()), callback=done)

    def attach(self, path: Path) -> Attachment | None:
        """Read a file for the next message; binary, oversized and unreadable files are refused with the reason."""
        try:
            attachment = read_attachment(path, self.session.max_attachment_chars)
        except AttachmentError as exc:
            self.notify(str(exc), title="Not attached", severity="error", timeout=10)
            return None
        self.attachments.append(attachment)
        self._show_attachments()
        self.notify(f"{attachment.name} ({len(attachment.text):,} characters) goes with your next message, after the "
                    "tool-result guards judged it.")  # fmt: skip
        return attachment

    def _show_attachments(self) -> None:
        label = self.query_one("#attachments", Static)
        names = ", ".join(a.name for a in self.attachments)
        label.update(f"📎 attached to your next message: {names}" if names else "")
        label.display = bool(names)

    def action_search(self) -> None:
        self.open_search("")

    def open_search(self, query: str) -> None:
        async def done(thread_id: str | None) -> None:
            if thread_id is not None and thread_id != self.thread_id:
                await self.switch_thread(thread_id)

        self.push_screen(SearchScreen(self.store.search, query), callback=done)

    def action_focus_input(self) -> None:
        prompt = self.query_one("#prompt", PromptArea)
        if not prompt.disabled:
            prompt.focus()

    def action_show_policy(self) -> None:
        text = self.session.policy_text()
        self.push_screen(DocumentScreen(f"Effective policy: {self.session.policy_name}", f"```yaml\n{text}\n```"))

    def action_show_tools(self) -> None:
        self.push_screen(DocumentScreen("Tools", tools_markdown(self.session.tools())))

    def action_help(self) -> None:
        keys = {b.action: b.key for b in self.active_bindings_keys()} | {"quit": "ctrl+q"}
        self.push_screen(DocumentScreen("Help", help_markdown(keys)))

    def active_bindings_keys(self) -> list:
        """The app's bindings after the user's keymap (for /help)."""
        keymap = self.keymap_result.keymap
        return [b.with_key(keymap[b.id]) if b.id in keymap else b for b in bindings(APP_KEYS)]

    async def action_clear(self) -> None:
        if self.busy:
            self.notify("Wait for the current answer first.", severity="warning")
            return
        await self.session.forget_thread(self.thread_id)
        self.store.clear(self.thread_id)
        await self._show_thread(self.thread_id)
        self.notify("Conversation cleared.")

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

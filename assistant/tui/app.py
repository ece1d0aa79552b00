"""The chat app. It takes its backend (a ChatSession) and its conversation store in the constructor."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

from textual import on, work
from textual.app import App, ComposeResult
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.widgets import Footer, Header, Label, ListView, Markdown, Static

from assistant.attachments import Attachment, AttachmentError, read_attachment
from assistant.tui.commands import BY_NAME, help_markdown, palette_provider, parse_slash, tools_markdown, unescape
from assistant.tui.errors import unexpected
from assistant.tui.images import pending_line, sniff_image
from assistant.tui.keymap import APP_KEYS, KeymapResult, bindings
from assistant.tui.screens.approval import ApprovalScreen
from assistant.tui.screens.definition_review import DefinitionReviewScreen
from assistant.tui.screens.dialogs import DocumentScreen
from assistant.tui.screens.pickers import FilePickerScreen, SearchScreen
from assistant.tui.screens.setup import SetupScreen
from assistant.tui.session import ChatSession, LoadProgress, SessionError, SetupProblem
from assistant.tui.store import ChatStore, new_thread_id
from assistant.tui.turns import TurnsApp
from assistant.tui.widgets.conversations import ConversationList
from assistant.tui.widgets.loading import LoadingPanel
from assistant.tui.widgets.prompt import PromptArea
from model.images import ImageData, ImageError
from tools.mcp.pins import DefinitionReview

READY_PLACEHOLDER = "Message the assistant · enter sends, ctrl+j new line · /help for commands, ctrl+p palette"
WAITING_PLACEHOLDER = "Waiting for the guards to load…"
_CHAT_ACTIONS = {spec.action for spec in APP_KEYS}


class ChatApp(TurnsApp):
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
        self.images: list[tuple[Path, ImageData]] = []  # go with the next message too
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
            await self.session.load(self._report_progress, review=self.review_definition)
            self.loaded = True
            self.resume_pending()
            self.import_agent_threads()
        except SessionError as exc:
            self._show_problem(exc.problem)
        except Exception as exc:
            self._show_problem(SetupProblem("The assistant could not start", unexpected("loading", exc), "", False))

    async def review_definition(self, review: DefinitionReview) -> bool:
        """Show a new or changed MCP tool definition as a diff; True when the user offers it (on_change: ask)."""
        future: asyncio.Future[bool] = asyncio.get_running_loop().create_future()

        def done(offer: bool | None) -> None:
            if not future.done():
                future.set_result(offer is True)

        self.push_screen(DefinitionReviewScreen(review), callback=done)
        offered = await future
        verdict = "offered in this session" if offered else "withheld"
        self.notify(f"MCP tool {review.server}.{review.tool}: {verdict}", timeout=6)
        return offered

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
        images, self.images = [image for _, image in self.images], []
        self._show_attachments()
        self.run_turn(unescape(text).strip(), attachments, images)

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

    @on(Markdown.LinkClicked)
    def _on_link(self, event: Markdown.LinkClicked) -> None:
        self.copy_to_clipboard(event.href)
        self.notify(f"Copied {event.href}\nLinks in answers are not opened for you: they can come from untrusted text.")

    # Conversations -------------------------------------------------------------------------------------------

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

    def attach(self, path: Path) -> Attachment | ImageData | None:
        """Read a file for the next message; binary, oversized and unreadable files are refused with the reason.
        A file whose bytes are an image's goes as an image (`attach_image`)."""
        if sniff_image(path):
            return self.attach_image(path)
        try:
            attachment = read_attachment(path, self.session.max_attachment_chars)
        except AttachmentError as exc:
            self.notify(str(exc), title="Not attached", severity="error", timeout=10)
            return None
        self.attachments.append(attachment)
        self._show_attachments()
        self.notify(f"{attachment.name} ({len(attachment.text):,} characters) goes with your next message, after the "
                    "tool-result guards judged it.")
        return attachment

    def attach_image(self, path: Path) -> ImageData | None:
        """An image for the next message, checked now as it will be on send: the session must take images (guards
        that see them, a main model that takes them) and the message's images must be within the policy's limits
        (they are read again together, so the count is checked too). Refused with the reason, and not attached."""
        if (why := self.session.images_refusal()) is not None:
            self.notify(f"{path.name}: {why}", title="Image not attached", severity="error", timeout=10)
            return None
        paths = [pending for pending, _ in self.images] + [path]
        try:
            images = self.session.read_images(paths)
        except ImageError as exc:
            self.notify(str(exc), title="Image not attached", severity="error", timeout=10)
            return None
        except (OSError, SyntaxError, ValueError) as exc:  # Pillow on a malformed header, should it get past the checks
            self.notify(f"{path.name}: not a readable image ({exc})", title="Image not attached", severity="error",
                        timeout=10)
            return None
        self.images = list(zip(paths, images, strict=True))
        self._show_attachments()
        image = images[-1]
        self.notify(f"{image.label} goes with your next message, judged with it by the guards that see images.")
        return image

    def _show_attachments(self) -> None:
        label = self.query_one("#attachments", Static)
        line = pending_line([a.name for a in self.attachments], [image for _, image in self.images])
        label.update(line)
        label.display = bool(line)

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

"""Pickers: a file to attach (ctrl+o, `/attach`) and a conversation found by its text (ctrl+f, `/search`)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import DirectoryTree, Input, Label, ListItem, ListView

from assistant.tui.store import SearchHit


class FilePickerScreen(ModalScreen[Path | None]):
    """Type a path (enter) or pick a file in the tree; Escape cancels."""

    BINDINGS = [Binding("escape", "cancel", "Cancel", id="dialog_cancel")]  # noqa: RUF012

    def __init__(self, root: Path) -> None:
        super().__init__(classes="dialog-screen")
        self.root = root

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog", id="file-picker"):
            yield Label("Attach a text file or an image to your next message", classes="dialog-title")
            yield Input(placeholder="path of the file, then enter (or pick one below)", id="file-path")
            yield DirectoryTree(self.root, classes="file-tree", id="file-tree")
            yield Label("Attached text is untrusted: the tool-result guards judge it before the model reads it. "
                        "Images are judged with your message.", classes="dialog-hint")

    def on_mount(self) -> None:
        self.query_one("#file-path", Input).focus()

    @on(Input.Submitted, "#file-path")
    def _typed(self, event: Input.Submitted) -> None:
        value = event.value.strip()
        if value:
            path = Path(value).expanduser()
            self.dismiss(path if path.is_absolute() else self.root / path)

    @on(DirectoryTree.FileSelected)
    def _picked(self, event: DirectoryTree.FileSelected) -> None:
        self.dismiss(Path(event.path))

    def action_cancel(self) -> None:
        self.dismiss(None)


class SearchHitItem(ListItem):
    def __init__(self, hit: SearchHit) -> None:
        super().__init__(Label(f"{hit.title}\n  {hit.snippet}", markup=False, classes="search-hit"))
        self.hit = hit


class SearchScreen(ModalScreen[str | None]):
    """Search every saved conversation's visible text; enter opens the chosen one. Escape cancels."""

    BINDINGS = [Binding("escape", "cancel", "Cancel", id="dialog_cancel")]  # noqa: RUF012

    def __init__(self, search: Callable[[str], list[SearchHit]], query: str = "") -> None:
        super().__init__(classes="dialog-screen")
        self.search = search
        self.query_text = query
        self.hits: list[SearchHit] = []

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog", id="search"):
            yield Label("Find a conversation", classes="dialog-title")
            yield Input(self.query_text, placeholder="text to find, in every conversation", id="search-input")
            yield Label("", id="search-status", classes="dialog-hint")
            yield ListView(id="search-results")

    async def on_mount(self) -> None:
        self.query_one("#search-input", Input).focus()
        await self.show(self.query_text)

    async def show(self, query: str) -> None:
        self.hits = self.search(query) if query.strip() else []
        results = self.query_one("#search-results", ListView)
        await results.clear()
        await results.extend(SearchHitItem(hit) for hit in self.hits)
        status = self.query_one("#search-status", Label)
        if not query.strip():
            status.update("Type to search; enter opens the first match, ↓ chooses another.")
        else:
            count = len(self.hits)
            status.update(f"{count} conversation{'s' if count != 1 else ''} found" if count else "Nothing found.")

    @on(Input.Changed, "#search-input")
    async def _changed(self, event: Input.Changed) -> None:
        await self.show(event.value)

    @on(Input.Submitted, "#search-input")
    def _submitted(self) -> None:
        if self.hits:
            self.dismiss(self.hits[0].thread_id)

    def key_down(self) -> None:
        results = self.query_one("#search-results", ListView)
        if self.hits and not results.has_focus:
            results.focus()
            results.index = 0

    @on(ListView.Selected, "#search-results")
    def _chosen(self, event: ListView.Selected) -> None:
        if isinstance(event.item, SearchHitItem):
            self.dismiss(event.item.hit.thread_id)

    def action_cancel(self) -> None:
        self.dismiss(None)

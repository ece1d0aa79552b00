"""The conversation list: select to switch (and resume), F2 to rename, Delete to delete."""

from __future__ import annotations

from textual.message import Message
from textual.widgets import Label, ListItem, ListView

from assistant.tui.keymap import LIST_KEYS, bindings
from assistant.tui.store import ThreadInfo


class ConversationItem(ListItem):
    def __init__(self, info: ThreadInfo) -> None:
        super().__init__(Label(info.title, markup=False), classes="conversation")
        self.info = info


class ConversationList(ListView):
    BINDINGS = bindings(LIST_KEYS)

    class Rename(Message):
        def __init__(self, thread_id: str) -> None:
            super().__init__()
            self.thread_id = thread_id

    class Delete(Message):
        def __init__(self, thread_id: str) -> None:
            super().__init__()
            self.thread_id = thread_id

    async def show(self, threads: list[ThreadInfo], current: str) -> None:
        """Replace the items, keeping the current conversation highlighted."""
        await self.clear()
        await self.extend(ConversationItem(info) for info in threads)
        for index, info in enumerate(threads):
            if info.id == current:
                self.index = index
                break

    def _highlighted_id(self) -> str | None:
        item = self.highlighted_child
        return item.info.id if isinstance(item, ConversationItem) else None

    def action_rename(self) -> None:
        if (thread_id := self._highlighted_id()) is not None:
            self.post_message(self.Rename(thread_id))

    def action_delete(self) -> None:
        if (thread_id := self._highlighted_id()) is not None:
            self.post_message(self.Delete(thread_id))

"""The chat's conversation list and transcripts, in SQLite next to the agent's checkpoints (`data_dir()`).

The agent's checkpointer keeps what the model sees; this store keeps what the user saw (each turn's text and its
events, guard verdicts included), the title and the timestamps, so the list can switch, rename, delete and resume.
"""

from __future__ import annotations

import json
import sqlite3
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from assistant.events import Event
from assistant.home import data_dir
from assistant.tui.transcript import event_from_json, visible_texts

SCHEMA_VERSION = 1
_SCHEMA = """
CREATE TABLE IF NOT EXISTS threads (
    id TEXT PRIMARY KEY,
    title TEXT NOT NULL,
    created_at REAL NOT NULL,
    updated_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS turns (
    thread_id TEXT NOT NULL REFERENCES threads(id) ON DELETE CASCADE,
    seq INTEGER NOT NULL,
    user_text TEXT NOT NULL,
    events TEXT NOT NULL,
    PRIMARY KEY (thread_id, seq)
);
"""
DEFAULT_TITLE = "New conversation"


@dataclass(frozen=True)
class ThreadInfo:
    id: str
    title: str
    updated_at: float
    turns: int


def new_thread_id() -> str:
    return uuid.uuid4().hex[:12]


def title_from(text: str, limit: int = 40) -> str:
    """A conversation title from its first message: one line, at most `limit` characters."""
    line = " ".join(text.split())
    return line if len(line) <= limit else line[: limit - 1].rstrip() + "…"


def default_store_path() -> Path:

    return data_dir() / "chat.sqlite"


class ChatStore:
    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._db = sqlite3.connect(path)
        self._db.execute("PRAGMA foreign_keys = ON")
        version = self._db.execute("PRAGMA user_version").fetchone()[0]
        if version > SCHEMA_VERSION:
            raise RuntimeError(f"{path} was written by a newer version (schema {version}); upgrade the assistant")
        with self._db:
            self._db.executescript(_SCHEMA)
            self._db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")

    def close(self) -> None:
        self._db.close()

    def ensure_thread(self, thread_id: str, title: str = DEFAULT_TITLE, *, updated_at: float | None = None) -> None:
        now = time.time() if updated_at is None else updated_at
        with self._db:
            self._db.execute(
                "INSERT OR IGNORE INTO threads (id, title, created_at, updated_at) VALUES (?, ?, ?, ?)",
                (thread_id, title, now, now),
            )

    def has_thread(self, thread_id: str) -> bool:
        return self._db.execute("SELECT 1 FROM threads WHERE id = ?", (thread_id,)).fetchone() is not None

    def list_threads(self) -> list[ThreadInfo]:
        rows = self._db.execute(
            "SELECT t.id, t.title, t.updated_at, (SELECT COUNT(*) FROM turns WHERE thread_id = t.id) "
            "FROM threads t ORDER BY t.updated_at DESC, t.rowid DESC"
        ).fetchall()
        return [ThreadInfo(id=r[0], title=r[1], updated_at=r[2], turns=r[3]) for r in rows]

    def title(self, thread_id: str) -> str:
        row = self._db.execute("SELECT title FROM threads WHERE id = ?", (thread_id,)).fetchone()
        return row[0] if row else DEFAULT_TITLE

    def rename(self, thread_id: str, title: str) -> None:
        title = " ".join(title.split())
        if not title:
            raise ValueError("a conversation title cannot be empty")
        with self._db:
            self._db.execute("UPDATE threads SET title = ? WHERE id = ?", (title, thread_id))

    def delete(self, thread_id: str) -> None:
        with self._db:
            self._db.execute("DELETE FROM threads WHERE id = ?", (thread_id,))

    def clear(self, thread_id: str) -> None:
        with self._db:
            self._db.execute("DELETE FROM turns WHERE thread_id = ?", (thread_id,))

    def add_turn(self, thread_id: str, user_text: str, events: Sequence[Event]) -> None:
        """Append a turn; the first turn of an untitled conversation names it."""
        self.ensure_thread(thread_id)
        payload = json.dumps([event.to_json() for event in events])
        with self._db:
            seq = self._db.execute("SELECT COALESCE(MAX(seq), -1) + 1 FROM turns WHERE thread_id = ?", (thread_id,))
            next_seq = seq.fetchone()[0]
            self._db.execute(
                "INSERT INTO turns (thread_id, seq, user_text, events) VALUES (?, ?, ?, ?)",
                (thread_id, next_seq, user_text, payload),
            )
            self._db.execute("UPDATE threads SET updated_at = ? WHERE id = ?", (time.time(), thread_id))
            if next_seq == 0:
                self._db.execute(
                    "UPDATE threads SET title = ? WHERE id = ? AND title = ?",
                    (title_from(user_text), thread_id, DEFAULT_TITLE),
                )

    def turns(self, thread_id: str) -> list[tuple[str, list[Event]]]:
        rows = self._db.execute(
            "SELECT user_text, events FROM turns WHERE thread_id = ? ORDER BY seq", (thread_id,)
        ).fetchall()
        return [(text, [event_from_json(item) for item in json.loads(events)]) for text, events in rows]

    def search(self, query: str, *, limit: int = 50) -> list[SearchHit]:
        """Conversations whose visible text (title, messages, answers, refusals, attachments and tool results as
        shown) contains `query`, case-insensitively; newest first, one hit per conversation with a snippet."""

        needle = " ".join(query.split()).casefold()
        if not needle:
            return []
        hits: list[SearchHit] = []
        for info in self.list_threads():
            texts = [info.title] + [t for text, events in self.turns(info.id) for t in visible_texts(text, events)]
            for text in texts:
                flat = " ".join(text.split())
                at = flat.casefold().find(needle)
                if at >= 0:
                    hits.append(SearchHit(info.id, info.title, snippet(flat, at, len(needle))))
                    break
            if len(hits) >= limit:
                break
        return hits


@dataclass(frozen=True)
class SearchHit:
    thread_id: str
    title: str
    snippet: str


def snippet(text: str, at: int, length: int, context: int = 30) -> str:
    start, end = max(at - context, 0), min(at + length + context, len(text))
    return ("…" if start else "") + text[start:end] + ("…" if end < len(text) else "")

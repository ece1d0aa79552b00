"""Fixtures for driving the real chat app with Pilot: its own ASSISTANT_HOME, a store in tmp_path, an app factory."""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from fake_session import FakeSession

from assistant.tui.store import ChatStore


@pytest.fixture(autouse=True)
def _home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Every test gets its own ASSISTANT_HOME (config, data, chat log)."""
    home = tmp_path / "home"
    monkeypatch.setenv("ASSISTANT_HOME", str(home))
    return home


@pytest.fixture
def store_path(tmp_path: Path) -> Path:
    return tmp_path / "chat.sqlite"


@pytest.fixture
def make_app(store_path: Path, tmp_path: Path) -> Callable[..., Any]:
    from assistant.tui.app import ChatApp

    stores: list[ChatStore] = []

    def make(session: Any = None, **kwargs: Any) -> ChatApp:
        store = ChatStore(store_path)
        stores.append(store)
        kwargs.setdefault("export_dir", tmp_path / "exports")
        return ChatApp(session if session is not None else FakeSession(), store, **kwargs)

    yield make
    for store in stores:
        store.close()

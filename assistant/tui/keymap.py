"""Key bindings: the ids users can remap, and the loader for `<config dir>/keymap.toml`.

keymap.toml maps binding ids to keys (comma-separated for several), for example:

    new_conversation = "ctrl+t"
    export = "ctrl+s,f9"
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from pathlib import Path

from pydantic import BaseModel, ConfigDict, ValidationError, create_model

from assistant.home import config_dir

KEYMAP_FILE = "keymap.toml"


@dataclass(frozen=True)
class KeySpec:
    id: str
    key: str
    action: str
    description: str
    show: bool = True


# App-level bindings; the ids are the public names users remap.
APP_KEYS: tuple[KeySpec, ...] = (
    KeySpec("new_conversation", "ctrl+n", "new_conversation", "New"),
    KeySpec("toggle_conversations", "ctrl+b", "toggle_conversations", "Conversations"),
    KeySpec("show_policy", "f3", "show_policy", "Policy"),
    KeySpec("show_tools", "f4", "show_tools", "Tools"),
    KeySpec("export", "ctrl+s", "export", "Export"),
    KeySpec("clear", "ctrl+l", "clear", "Clear", show=False),
    KeySpec("help", "f1", "help", "Help"),
    KeySpec("stop", "escape", "stop", "Stop"),  # stops a running turn; otherwise it puts the cursor in the input
    KeySpec("attach", "ctrl+o", "attach", "Attach"),
    KeySpec("search", "ctrl+f", "search", "Find"),
    KeySpec("focus_input", "f6", "focus_input", "Input", show=False),
)
# Bindings of the conversation list (active while it has focus).
LIST_KEYS: tuple[KeySpec, ...] = (
    KeySpec("rename_conversation", "f2", "rename", "Rename"),
    KeySpec("delete_conversation", "delete", "delete", "Delete"),
)
ALL_KEYS = APP_KEYS + LIST_KEYS


def bindings(specs: tuple[KeySpec, ...]) -> list:
    from textual.binding import Binding

    return [Binding(s.key, s.action, s.description, show=s.show, id=s.id) for s in specs]


def _schema() -> type[BaseModel]:
    fields = {spec.id: (str | None, None) for spec in ALL_KEYS}
    config = ConfigDict(extra="forbid", strict=True)
    # pydantic's overloads cannot type field definitions built at run time (one per key binding)
    return create_model("Keymap", __config__=config, **fields)  # type: ignore[call-overload]  # see above


@dataclass(frozen=True)
class KeymapResult:
    keymap: dict[str, str]
    problems: tuple[str, ...] = ()


def load_keymap(path: Path) -> KeymapResult:
    """Read a keymap file; a missing file is an empty keymap. Problems name the file and the key, never raise."""
    if not path.is_file():
        return KeymapResult({})
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        return KeymapResult({}, (f"{path}: cannot read the keymap: {exc}",))
    try:
        parsed = _schema().model_validate(data)
    except ValidationError as exc:
        known = ", ".join(spec.id for spec in ALL_KEYS)
        problems = []
        for error in exc.errors():
            key = ".".join(str(part) for part in error["loc"])
            hint = f" (known ids: {known})" if error["type"] == "extra_forbidden" else ""
            problems.append(f"{path}: {key}: {error['msg'].lower()}{hint}")
        return KeymapResult({}, tuple(problems))
    keymap = {key: value.replace(" ", "") for key, value in parsed.model_dump().items() if value}
    return KeymapResult(keymap)


def default_keymap_path() -> Path:

    return config_dir() / KEYMAP_FILE

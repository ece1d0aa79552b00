"""The tools lock file beside a policy (`POLICY.tools.lock`): each MCP tool definition's sha256 and the definition
itself, as `assistant tools pin` recorded them. Sorted, indented JSON: a reviewer reads a re-pin as a diff of
definitions, and the chat shows the same diff when `on_change: ask` asks a human."""

from __future__ import annotations

import difflib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from tools.mcp.server import ListedTool

LOCK_SUFFIX = ".tools.lock"
LOCK_VERSION = 1
PinStatus = Literal["pinned", "changed", "new"]
# server -> the server's own tool name -> {"sha256": ..., "definition": {...}}
Pins = Mapping[str, Mapping[str, Mapping[str, Any]]]


class LockFileError(ValueError):
    """The lock file cannot be read as pins."""


def lock_path(policy_path: str | Path) -> Path:
    """`FILE.tools.lock` beside the policy `FILE`."""
    return Path(f"{policy_path}{LOCK_SUFFIX}")


def pin_entry(item: ListedTool) -> dict[str, Any]:
    return {"sha256": item.sha256, "definition": item.definition()}


def _is_entry(entry: object) -> bool:
    return isinstance(entry, dict) and isinstance(entry.get("sha256"), str) and isinstance(entry.get("definition"),
                                                                                            dict)


def read_pins(path: Path) -> dict[str, dict[str, dict[str, Any]]]:
    """The pins of `path`; {} when there is no lock file (every definition is then new)."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as exc:
        raise LockFileError(f"{path}: not a tools lock file ({exc}); re-create it with `assistant tools pin`") from exc
    servers = data.get("servers") if isinstance(data, dict) else None
    if data.get("version") != LOCK_VERSION or not isinstance(servers, dict) or not all(
            isinstance(tools, dict) and all(_is_entry(e) for e in tools.values()) for tools in servers.values()):
        raise LockFileError(f"{path}: not a version {LOCK_VERSION} tools lock file; re-create it with "
                            "`assistant tools pin`")
    return {server: {name: dict(entry) for name, entry in tools.items()} for server, tools in servers.items()}


def pins_text(pins: Pins) -> str:
    """The lock file's text: sorted, indented JSON (readable, diffable, fit to commit beside the policy)."""
    body = {"version": LOCK_VERSION,
            "servers": {server: {name: dict(entry) for name, entry in tools.items()} for server, tools in pins.items()}}
    return json.dumps(body, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def pin_status(pins: Pins, server: str, item: ListedTool) -> PinStatus:
    pinned = pins.get(server, {}).get(item.name)
    return "new" if pinned is None else "pinned" if pinned["sha256"] == item.sha256 else "changed"


@dataclass(frozen=True)
class DefinitionReview:
    """What a human is shown under `on_change: ask`: the definition's diff from its pin (all of it when new)."""

    server: str
    tool: str
    status: PinStatus
    diff: str
    lock_file: str


def _lines(definition: Mapping[str, Any] | None) -> list[str]:
    if definition is None:
        return []
    return json.dumps(definition, indent=2, sort_keys=True, ensure_ascii=False).splitlines(keepends=True)


def review_of(pins: Pins, server: str, item: ListedTool, lock_file: str) -> DefinitionReview:
    pinned = pins.get(server, {}).get(item.name)
    old = pinned["definition"] if pinned is not None else None
    diff = "".join(difflib.unified_diff(_lines(old), _lines(item.definition()),
                                        fromfile=f"{server}.{item.name} (pinned)" if old else "(not pinned)",
                                        tofile=f"{server}.{item.name} (now)"))
    return DefinitionReview(server, item.name, pin_status(pins, server, item), diff, lock_file)

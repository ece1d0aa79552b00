"""The names the model sees for MCP tools: the server's own name, or `server.tool` where two would clash (pure)."""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Collection, Sequence

from guards.policy.base import TOOL_NAME_PATTERN

_EXPOSABLE = re.compile(TOOL_NAME_PATTERN)  # what the policy and the prompt format accept as a tool name


def exposed_names(tools: Sequence[tuple[str, str]], reserved: Collection[str] = ()) -> dict[tuple[str, str], str]:
    """{(server, tool): name} for every (server, tool) pair.

    A tool keeps its own name unless another server offers the same name or it is taken by a built-in, custom or
    application tool (`reserved`): then every tool of that name is called `server.tool`, so the choice never depends
    on which server started first.
    """
    counts = Counter(tool for _, tool in tools)
    reserved = set(reserved)
    names: dict[tuple[str, str], str] = {}
    for server, tool in tools:
        plain = counts[tool] == 1 and tool not in reserved and "." not in tool
        names[(server, tool)] = tool if plain else f"{server}.{tool}"
    return names


def name_problem(name: str) -> str | None:
    """Why `name` cannot be offered to the model, or None."""
    if not _EXPOSABLE.match(name):
        return f"its name {name!r} is not a valid tool name here (letters, digits, _ . -, not starting with a digit)"
    return None


def split_qualified(name: str) -> tuple[str, str] | None:
    """`server.tool` -> (server, tool); None for a name without a dot. Server names never contain dots."""
    server, dot, tool = name.partition(".")
    return (server, tool) if dot and server and tool else None

"""The tools one assistant may use: the enabled built-ins, the policy's custom tools, and those the app passes."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from typing import Any

from model.messages import ToolDefinition
from tools.base import Tool


class ToolRegistry:
    """Tools by name. Plain data: nothing registers itself, everything is passed in."""

    def __init__(self, tools: Iterable[Tool] = ()) -> None:
        self._tools: dict[str, Tool] = {}
        for item in tools:
            self.add(item)

    def add(self, tool: Tool) -> None:
        if tool.name in self._tools:
            raise ValueError(f"two tools are named {tool.name!r}")
        self._tools[tool.name] = tool

    def get(self, name: str) -> Tool | None:
        return self._tools.get(name)

    def __contains__(self, name: object) -> bool:
        return name in self._tools

    def __iter__(self) -> Iterator[Tool]:
        return iter(self._tools.values())

    def __len__(self) -> int:
        return len(self._tools)

    def names(self) -> tuple[str, ...]:
        return tuple(self._tools)

    def resolve(self, name: str) -> str | None:
        """The registered name `name` refers to: itself, or for an MCP tool also `server.tool` (its qualified name,
        which stays valid whether or not the tool needed the server prefix to avoid a clash)."""
        if name in self._tools:
            return name
        matches = [t.name for t in self._tools.values() if getattr(t, "qualified_name", None) == name]
        return matches[0] if len(matches) == 1 else None

    def visible(self, tools_config: Any) -> tuple[Tool, ...]:
        """The tools the policy lets the model call at all (allow/deny lists): the ones to put in the prompt."""
        allow, deny = tools_config.allow, set(tools_config.deny)
        return tuple(t for t in self if t.name not in deny and (allow is None or t.name in allow))

    def definitions(self, tools_config: Any) -> tuple[ToolDefinition, ...]:
        """Definitions of the visible custom tools (the built-ins are named in the system prompt instead)."""
        return tuple(t.definition() for t in self.visible(tools_config) if not t.builtin)

    def builtin_names(self, tools_config: Any) -> tuple[str, ...]:
        return tuple(t.name for t in self.visible(tools_config) if t.builtin)


def build_registry(tools_config: Any, *, extra: Iterable[Tool] = (), env: Mapping[str, str] | None = None,
                   bwrap: str = "bwrap") -> ToolRegistry:
    """Built-ins enabled in the policy's `tools.builtin`, then `tools.custom`, then `extra` (the app's own tools).

    Raises custom.ToolLoadError when a custom tool cannot be imported or described.
    """
    from tools.custom import load_custom
    from tools.sandbox import SandboxLimits

    registry = ToolRegistry()
    builtin = tools_config.builtin
    if builtin.code_interpreter.enabled:
        from tools.code_interpreter import CodeInterpreter

        registry.add(CodeInterpreter(SandboxLimits.from_policy(tools_config.sandbox), bwrap=bwrap))
    if builtin.brave_search.enabled:
        from tools.brave_search import BraveSearch

        registry.add(BraveSearch.from_config(builtin.brave_search, env))
    if builtin.wolfram_alpha.enabled:
        from tools.wolfram_alpha import WolframAlpha

        registry.add(WolframAlpha.from_config(builtin.wolfram_alpha, env))
    for ref in tools_config.custom:
        registry.add(load_custom(ref))
    for item in extra:
        registry.add(item)
    return registry


def add_mcp_tools(registry: ToolRegistry, tools_config: Any, *, env: Mapping[str, str] | None = None) -> Any:
    """Start the policy's `tools.mcp` servers and add their tools (an MCP tool whose name is taken becomes
    `server.tool`). Returns the tools.mcp.McpToolset: close it to stop the servers (at exit at the latest).

    Raises tools.mcp.McpStartupError when a `required` server fails; any other failure is in the toolset's notices.
    """
    from tools.mcp import start_mcp_tools

    toolset = start_mcp_tools(tools_config, reserved_names=registry.names(), env=env)
    for item in toolset.tools:
        registry.add(item)
    return toolset

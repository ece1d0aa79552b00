"""The tools one assistant may use: the enabled built-ins, the policy's custom tools, and those the app passes."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping

from guards.policy.tools_config import ToolsConfig
from model.messages import ToolDefinition
from tools.base import Tool
from tools.brave_search import BraveSearch
from tools.code_interpreter import CodeInterpreter
from tools.custom import load_custom
from tools.mcp import McpToolset, start_mcp_tools
from tools.mcp.vetting import Vetting
from tools.sandbox import SandboxLimits
from tools.wolfram_alpha import WolframAlpha

# The built-in tools, by their name in `tools.builtin`: (the tools section, the environment, bwrap's path) -> tool.
BuiltinFactory = Callable[[ToolsConfig, Mapping[str, str] | None, str], Tool]
BUILTINS: dict[str, BuiltinFactory] = {
    "code_interpreter": lambda config, env, bwrap: CodeInterpreter(
        SandboxLimits.from_policy(config.sandbox), bwrap=bwrap
    ),
    "brave_search": lambda config, env, bwrap: BraveSearch.from_config(config.builtin.brave_search, env),
    "wolfram_alpha": lambda config, env, bwrap: WolframAlpha.from_config(config.builtin.wolfram_alpha, env),
}


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
        matches = [t.name for t in self._tools.values() if t.qualified_name == name]
        return matches[0] if len(matches) == 1 else None

    def visible(self, tools_config: ToolsConfig) -> tuple[Tool, ...]:
        """The tools the policy lets the model call at all (allow/deny lists): the ones to put in the prompt."""
        allow, deny = tools_config.allow, set(tools_config.deny)
        return tuple(t for t in self if t.name not in deny and (allow is None or t.name in allow))

    def definitions(self, tools_config: ToolsConfig) -> tuple[ToolDefinition, ...]:
        """Definitions of the visible custom tools (the built-ins are named in the system prompt instead)."""
        return tuple(t.definition() for t in self.visible(tools_config) if not t.builtin)

    def builtin_names(self, tools_config: ToolsConfig) -> tuple[str, ...]:
        return tuple(t.name for t in self.visible(tools_config) if t.builtin)


def build_registry(tools_config: ToolsConfig, *, extra: Iterable[Tool] = (), env: Mapping[str, str] | None = None,
                   bwrap: str = "bwrap") -> ToolRegistry:
    """Built-ins enabled in the policy's `tools.builtin`, then `tools.custom`, then `extra` (the app's own tools).

    Raises custom.ToolLoadError when a custom tool cannot be imported or described.
    """
    registry = ToolRegistry()
    for name, make in BUILTINS.items():
        if getattr(tools_config.builtin, name).enabled:  # the section named like the tool
            registry.add(make(tools_config, env, bwrap))
    for ref in tools_config.custom:
        registry.add(load_custom(ref))
    for item in extra:
        registry.add(item)
    return registry


def add_mcp_tools(registry: ToolRegistry, tools_config: ToolsConfig, *,
                  env: Mapping[str, str] | None = None, vetting: Vetting | None = None) -> McpToolset:
    """Start the policy's `tools.mcp` servers and add their tools (an MCP tool whose name is taken becomes
    `server.tool`). Returns the tools.mcp.McpToolset: close it to stop the servers (at exit at the latest).

    Raises tools.mcp.McpStartupError when a `required` server fails; any other failure is in the toolset's notices.
    `vetting`: judge and pin-check each definition (tools.mcp.vetting); a withheld tool is not added.
    """
    toolset = start_mcp_tools(tools_config, reserved_names=registry.names(), env=env, vetting=vetting)
    for item in toolset.tools:
        registry.add(item)
    return toolset

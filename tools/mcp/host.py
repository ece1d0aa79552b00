"""The policy's MCP servers for one agent's lifetime: started together, their tools as `Tool`s, stopped together.

The servers live on a private event loop in a daemon thread, so their tools can be awaited from any event loop (a
fresh `asyncio.run` per turn, the TUI's loop, the web server's loop) and the CLI can start them synchronously.
"""

from __future__ import annotations

import asyncio
import atexit
import os
import threading
from collections.abc import AsyncIterator, Collection, Coroutine, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any, TypeVar

from guards.policy.mcp_config import McpServerConfig
from guards.policy.tools_config import ToolsConfig
from model.messages import BUILTIN_TOOLS
from tools.base import Tool, ToolOutput
from tools.mcp.naming import exposed_names, name_problem
from tools.mcp.server import ListedTool, McpServer, McpServerError
from tools.mcp.tool import Caller, McpTool, schema_problem, side_effects_from
from tools.mcp.vetting import Vetting, Withheld

T = TypeVar("T")


class McpStartupError(ValueError):
    """A server the policy marks `required` failed to start: the agent does not start without it."""


@dataclass(frozen=True)
class McpNotice:
    """Something the user should know about one server: it failed to start, or a tool of it was left out."""

    server: str
    message: str
    kind: str = "mcp_server_failed"  # or mcp_tool_skipped, mcp_tool_withheld

    def __str__(self) -> str:
        return self.message


class _LoopThread:
    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, name="mcp-servers", daemon=True)
        self._thread.start()
        self.closed = False

    def run(self, coro: Coroutine[Any, Any, T], timeout: float | None = None) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(timeout=10)
        if not self._thread.is_alive():
            self.loop.close()


@dataclass
class McpToolset:
    """The MCP tools of a running agent. `close()` stops every server (idempotent)."""

    tools: tuple[Tool, ...] = ()
    notices: tuple[McpNotice, ...] = ()
    startup_ms: dict[str, float] = field(default_factory=dict)  # server -> start, initialize and list, in ms
    servers: dict[str, McpServer] = field(default_factory=dict, repr=False)
    withheld: tuple[Withheld, ...] = ()  # tools the model does not see (judged, pinned: tools.mcp.vetting)
    listed: dict[str, list[ListedTool]] = field(default_factory=dict)  # server -> every tool it listed (the pins)
    version: int = 0  # bumped whenever a server's list changed what the model may see
    reserved: frozenset[str] = frozenset()  # the built-in, custom and application tools' names
    _host: _LoopThread | None = field(default=None, repr=False)
    _told: int = field(default=0, repr=False)

    def take_notices(self) -> tuple[McpNotice, ...]:
        """The notices not taken yet: an agent reports a failed server once, and a list change when it comes."""
        fresh, self._told = self.notices[self._told:], len(self.notices)
        return fresh

    def withhold(self, item: Withheld) -> None:
        self.withheld = (*(w for w in self.withheld if (w.server, w.tool) != (item.server, item.tool)), item)
        self.notices = (*self.notices, McpNotice(item.server, f"MCP server {item.server}: tool {item.tool} "
                                                              f"withheld: {item.reason}", kind="mcp_tool_withheld"))

    def close(self) -> None:
        host, self._host = self._host, None
        if host is None or host.closed:
            return
        try:
            host.run(_stop_all(list(self.servers.values())), timeout=30)
        except Exception:  # closing must not raise; the processes were signalled
            pass
        finally:
            host.close()

    def __enter__(self) -> McpToolset:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


async def _stop_all(servers: list[McpServer]) -> None:
    await asyncio.gather(*(server.stop() for server in servers), return_exceptions=True)


async def _start_all(servers: list[McpServer]) -> list[list[ListedTool] | BaseException]:
    return await asyncio.gather(*(server.start() for server in servers), return_exceptions=True)


def _caller(host: _LoopThread, server: McpServer) -> Caller:
    async def call(remote: str, arguments: dict[str, Any], meta: dict[str, str] | None) -> ToolOutput:
        if host.closed:
            return ToolOutput.failure(f"MCP server {server.name} is not available: the agent's servers were stopped")
        future = asyncio.run_coroutine_threadsafe(server.call(remote, arguments, meta), host.loop)
        return await asyncio.wrap_future(future)

    return call


def start_mcp_tools(tools_config: ToolsConfig, *, reserved_names: Collection[str] = (),
                    env: Mapping[str, str] | None = None, vetting: Vetting | None = None) -> McpToolset:
    """Start every server of `tools_config.mcp` at once and wait for each to list its tools (or fail).

    A failed server leaves a notice and no tools, unless it is `required`: then every server is stopped and
    McpStartupError names it. `reserved_names`: the other tools' names (an MCP tool with one of them becomes
    `server.tool`). `env`: where secrets named in the policy are read (default: this process's environment).
    `vetting`: judge and pin-check every definition, at start and on `list_changed` (None: offered unjudged, and the
    agent's prompt refuses them - for tests of the transport and for `assistant tools pin`).
    """
    configs = tuple(tools_config.mcp)
    if not configs:
        return McpToolset()
    host = _LoopThread()
    servers = [McpServer(config, os.environ if env is None else env) for config in configs]
    toolset = McpToolset(servers={s.name: s for s in servers}, reserved=frozenset(reserved_names), _host=host)
    atexit.register(toolset.close)  # a script that forgets close() must not leave servers behind
    outcomes = host.run(_start_all(servers))
    notices: list[McpNotice] = []
    listed: list[tuple[McpServer, ListedTool]] = []
    for server, outcome in zip(servers, outcomes, strict=True):
        if isinstance(outcome, BaseException):
            message = str(outcome) if isinstance(outcome, McpServerError) else \
                f"MCP server {server.name}: failed to start: {type(outcome).__name__}: {outcome}"
            if server.config.required:
                toolset.close()
                raise McpStartupError(f"{message} (the policy marks it required)")
            notices.append(McpNotice(server.name, f"{message}; the agent goes on without its tools"))
            continue
        toolset.startup_ms[server.name] = server.startup_ms or 0.0
        toolset.listed[server.name] = list(outcome)
        for item in outcome:
            skip = _skip_reason(server.config, item)
            if skip is None:
                listed.append((server, item))
            elif skip:
                notices.append(McpNotice(server.name, f"MCP server {server.name}: tool {item.name} left out: {skip}",
                                         kind="mcp_tool_skipped"))
    names = exposed_names([(s.name, t.name) for s, t in listed], reserved_names)
    made = [(server, item, _tool(host, server, item, names[(server.name, item.name)])) for server, item in listed]
    toolset.notices = tuple(notices)
    if vetting is not None:
        verdicts = host.run(_vet_all(vetting, made, toolset))
        for withheld in verdicts:
            if withheld is not None:
                toolset.withhold(withheld)
        made = [entry for entry, withheld in zip(made, verdicts, strict=True) if withheld is None]
    toolset.tools = tuple(tool for _, _, tool in made)
    for server in servers:
        server.on_list_changed = _relisted(toolset, server, vetting)
    return toolset


def _tool(host: _LoopThread, server: McpServer, item: ListedTool, name: str) -> McpTool:
    return McpTool(name=name, server=server.name, remote_name=item.name, description=item.description,
                   input_schema=item.input_schema, annotations=item.annotations, title=item.title,
                   side_effects=side_effects_from(item.annotations, server.config.side_effects.get(item.name)),
                   caller=_caller(host, server), sha256=item.sha256, trace_context=server.config.trace_context)


def _others(toolset: McpToolset, server: str) -> set[str]:
    """Every tool name that is not `server`'s: the shadowing rule's names."""
    names = set(toolset.reserved) | set(BUILTIN_TOOLS)  # the Llama 3.1 built-ins, enabled or not
    for other, items in toolset.listed.items():
        if other != server:
            names.update(item.name for item in items)
            names.update(f"{other}.{item.name}" for item in items)
    return names


async def _vet_all(vetting: Vetting, made: list[tuple[McpServer, ListedTool, McpTool]],
                   toolset: McpToolset) -> list[Withheld | None]:
    return list(await asyncio.gather(*(vetting.vet(server.config, item, tool, _others(toolset, server.name))
                                       for server, item, tool in made)))


def _relisted(toolset: McpToolset, server: McpServer, vetting: Vetting | None):  # -> McpServer.on_list_changed
    """What happens when `server` re-lists its tools mid-session (`notifications/tools/list_changed`): a removed
    tool disappears, a changed one is vetted again (withheld, or updated once judged under `on_change: allow`), a
    new one is withheld until the agent restarts (then it is vetted like any other)."""

    async def relisted(items: list[ListedTool]) -> None:
        toolset.listed[server.name] = list(items)
        fresh = {item.name: item for item in items}
        mine = [t for t in toolset.tools if isinstance(t, McpTool) and t.server == server.name]
        for tool in mine:
            item = fresh.get(tool.remote_name)
            if tool.withheld or (item is not None and item.sha256 == tool.sha256):
                continue
            withheld: Withheld | None
            if item is None:
                withheld = Withheld(server.name, tool.remote_name, "the server no longer lists it")
            else:
                tool.update(description=item.description, input_schema=item.input_schema,
                            annotations=item.annotations, title=item.title, sha256=item.sha256,
                            side_effects=side_effects_from(item.annotations,
                                                           server.config.side_effects.get(item.name)))
                problem = schema_problem(item.input_schema)
                withheld = Withheld(server.name, item.name, f"changed mid-session: {problem}") if problem else \
                    await vetting.vet(server.config, item, tool, _others(toolset, server.name)) \
                    if vetting is not None else None
            if withheld is not None:
                tool.withheld = withheld.reason
                toolset.withhold(withheld)
        known = {t.remote_name for t in mine} | {w.tool for w in toolset.withheld if w.server == server.name}
        for item in items:
            if item.name not in known and _skip_reason(server.config, item) is None:
                toolset.withhold(Withheld(server.name, item.name, "announced mid-session (list_changed): offered "
                                                                  "only after a restart, once vetted"))
        toolset.version += 1

    return relisted


def _skip_reason(config: McpServerConfig, item: ListedTool) -> str | None:
    """'' to leave a tool out quietly (the policy's allow/deny), a reason to leave it out with a notice, or None."""
    if item.name in config.deny or (config.allow is not None and item.name not in config.allow):
        return ""
    return name_problem(item.name) or schema_problem(item.input_schema)


@asynccontextmanager
async def open_mcp_tools(tools_config: ToolsConfig, *, reserved_names: Collection[str] = (),
                         env: Mapping[str, str] | None = None,
                         vetting: Vetting | None = None) -> AsyncIterator[McpToolset]:
    """`start_mcp_tools` for async code: the servers stop when the block ends."""
    toolset = await asyncio.to_thread(start_mcp_tools, tools_config, reserved_names=reserved_names, env=env,
                                      vetting=vetting)
    try:
        yield toolset
    finally:
        await asyncio.to_thread(toolset.close)

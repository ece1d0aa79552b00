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
from tools.base import Tool, ToolOutput
from tools.mcp.naming import exposed_names, name_problem
from tools.mcp.server import ListedTool, McpServer, McpServerError
from tools.mcp.tool import Caller, McpTool, schema_problem, side_effects_from

T = TypeVar("T")


class McpStartupError(ValueError):
    """A server the policy marks `required` failed to start: the agent does not start without it."""


@dataclass(frozen=True)
class McpNotice:
    """Something the user should know about one server: it failed to start, or a tool of it was left out."""

    server: str
    message: str
    kind: str = "mcp_server_failed"  # or mcp_tool_skipped

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
    _host: _LoopThread | None = field(default=None, repr=False)
    _told: bool = field(default=False, repr=False)

    def take_notices(self) -> tuple[McpNotice, ...]:
        """The notices, the first time only: an agent reports its failed servers once, not on every turn."""
        if self._told:
            return ()
        self._told = True
        return self.notices

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
    async def call(remote: str, arguments: dict[str, Any]) -> ToolOutput:
        if host.closed:
            return ToolOutput.failure(f"MCP server {server.name} is not available: the agent's servers were stopped")
        future = asyncio.run_coroutine_threadsafe(server.call(remote, arguments), host.loop)
        return await asyncio.wrap_future(future)

    return call


def start_mcp_tools(tools_config: ToolsConfig, *, reserved_names: Collection[str] = (),
                    env: Mapping[str, str] | None = None) -> McpToolset:
    """Start every server of `tools_config.mcp` at once and wait for each to list its tools (or fail).

    A failed server leaves a notice and no tools, unless it is `required`: then every server is stopped and
    McpStartupError names it. `reserved_names`: the other tools' names (an MCP tool with one of them becomes
    `server.tool`). `env`: where secrets named in the policy are read (default: this process's environment).
    """
    configs = tuple(tools_config.mcp)
    if not configs:
        return McpToolset()
    host = _LoopThread()
    servers = [McpServer(config, os.environ if env is None else env) for config in configs]
    toolset = McpToolset(servers={s.name: s for s in servers}, _host=host)
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
        for item in outcome:
            skip = _skip_reason(server.config, item)
            if skip is None:
                listed.append((server, item))
            elif skip:
                notices.append(McpNotice(server.name, f"MCP server {server.name}: tool {item.name} left out: {skip}",
                                         kind="mcp_tool_skipped"))
    names = exposed_names([(s.name, t.name) for s, t in listed], reserved_names)
    toolset.tools = tuple(
        McpTool(name=names[(server.name, item.name)], server=server.name, remote_name=item.name,
                description=item.description, input_schema=item.input_schema, annotations=item.annotations,
                side_effects=side_effects_from(item.annotations, server.config.side_effects.get(item.name)),
                caller=_caller(host, server))
        for server, item in listed
    )
    toolset.notices = tuple(notices)
    return toolset


def _skip_reason(config: McpServerConfig, item: ListedTool) -> str | None:
    """'' to leave a tool out quietly (the policy's allow/deny), a reason to leave it out with a notice, or None."""
    if item.name in config.deny or (config.allow is not None and item.name not in config.allow):
        return ""
    return name_problem(item.name) or schema_problem(item.input_schema)


@asynccontextmanager
async def open_mcp_tools(tools_config: ToolsConfig, *, reserved_names: Collection[str] = (),
                         env: Mapping[str, str] | None = None) -> AsyncIterator[McpToolset]:
    """`start_mcp_tools` for async code: the servers stop when the block ends."""
    toolset = await asyncio.to_thread(start_mcp_tools, tools_config, reserved_names=reserved_names, env=env)
    try:
        yield toolset
    finally:
        await asyncio.to_thread(toolset.close)

"""One running MCP server: start (initialize, list tools), call tools with a timeout, notice death, stop.

Everything here runs on the toolset's own event loop (tools.mcp.host). The SDK's transports are anyio context
managers that must be entered and left in one task, so a long-lived owner task holds them open until `stop`.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import tempfile
import time
from collections.abc import Awaitable, Callable, Mapping
from contextlib import AsyncExitStack
from dataclasses import dataclass
from typing import Any

from guards.policy.mcp_config import McpServerConfig
from tools.base import ToolOutput
from tools.mcp.results import to_output
from tools.mcp.transport import describe_target, open_transport

# The SDK logs a server's stray stdout lines and dropped connections with tracebacks: silent unless the application
# configures logging (the records still propagate to its handlers), like the project's own loggers.
logging.getLogger("mcp").addHandler(logging.NullHandler())
logger = logging.getLogger(__name__)

MAX_TOOL_PAGES = 20  # tools/list pages read from one server (a server that pages forever must not stall the start)
STDERR_TAIL_CHARS = 400
STDERR_TAIL_LINES = 3
RESTART_BACKOFF_S = 0.5  # the first restart's wait; doubled per try in a row
RESTART_BACKOFF_MAX_S = 8.0


class McpServerError(Exception):
    """A server failed to start; the message names the server and says why."""

    def __init__(self, server: str, message: str) -> None:
        self.server = server
        super().__init__(f"MCP server {server}: {message}")


@dataclass(frozen=True)
class ListedTool:
    name: str
    description: str | None
    input_schema: dict[str, Any]
    annotations: dict[str, Any] | None
    title: str | None = None

    def definition(self) -> dict[str, Any]:
        """The whole definition as the server listed it (MCP's field names)."""
        return {"name": self.name, "title": self.title, "description": self.description,
                "inputSchema": self.input_schema, "annotations": self.annotations}

    @property
    def sha256(self) -> str:
        """The pin: sha256 of the whole definition as the server listed it (canonical JSON)."""
        return hashlib.sha256(json.dumps(self.definition(), sort_keys=True, ensure_ascii=False).encode()).hexdigest()


def describe_error(exc: BaseException) -> str:
    """A short cause: the first leaf of an exception group, an MCP error's message, an OS error's words."""
    from mcp.shared.exceptions import McpError  # lazy: the MCP SDK loads only with a configured server

    while isinstance(exc, BaseExceptionGroup) and exc.exceptions:
        exc = exc.exceptions[0]
    if isinstance(exc, McpError) and exc.error.message:
        return str(exc.error.message)
    if isinstance(exc, OSError) and exc.strerror:
        return f"{exc.strerror}: {exc.filename}" if exc.filename else exc.strerror
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def is_disconnect(exc: BaseException) -> bool:
    """Whether `exc` says the connection to the server is gone (closed by a dead process, a broken pipe)."""
    import anyio
    from mcp.shared.exceptions import McpError
    from mcp.types import CONNECTION_CLOSED

    while isinstance(exc, BaseExceptionGroup) and exc.exceptions:
        exc = exc.exceptions[0]
    if isinstance(exc, McpError) and exc.error.code == CONNECTION_CLOSED:
        return True
    return isinstance(exc, anyio.ClosedResourceError | anyio.BrokenResourceError | anyio.EndOfStream |
                      BrokenPipeError | ConnectionError)


class McpServer:
    def __init__(self, config: McpServerConfig, env: Mapping[str, str]) -> None:
        self.config = config
        self.name: str = config.name
        self._env = env
        self._session: Any = None
        self._owner: asyncio.Task[None] | None = None
        self._stop: asyncio.Event | None = None
        self._stopping = False
        self._errlog = tempfile.TemporaryFile("w+b")  # noqa: SIM115 - lives as long as the server; the server's stderr (only its fd is used)
        self.failure: str | None = None  # why the server is no longer usable
        self.startup_ms: float | None = None
        # called with the re-listed tools after the server sent notifications/tools/list_changed (tools.mcp.host)
        self.on_list_changed: Callable[[list[ListedTool]], Awaitable[None]] | None = None
        self._relisting: set[asyncio.Task[None]] = set()
        self._restarting: asyncio.Task[None] | None = None
        self.restarts = 0  # restarts in a row since the server last answered a call (tools.mcp[].max_restarts)

    # ---- lifecycle -------------------------------------------------------------------------------------------------
    async def start(self, *, restart: bool = False) -> list[ListedTool]:
        """Start the server and list its tools; raises McpServerError (the server is then stopped, unless this was a
        restart: the restart loop tries again)."""
        loop = asyncio.get_running_loop()
        ready: asyncio.Future[list[ListedTool]] = loop.create_future()
        self._stop = stop = asyncio.Event()
        started = time.perf_counter()
        self._owner = asyncio.create_task(self._hold(ready, stop), name=f"mcp-server-{self.name}")
        try:
            tools = await asyncio.wait_for(asyncio.shield(ready), self.config.startup_timeout_s)
        except TimeoutError:
            await (self._abandon() if restart else self.stop())
            raise McpServerError(self.name, f"did not start within {self.config.startup_timeout_s:g} s "
                                            f"(startup_timeout_s; {describe_target(self.config)})"
                                            f"{self.stderr_tail()}") from None
        except McpServerError:
            await (self._abandon() if restart else self.stop())
            raise
        self.startup_ms = (time.perf_counter() - started) * 1000
        return tools

    async def _hold(self, ready: asyncio.Future[list[ListedTool]], stop: asyncio.Event) -> None:
        from mcp import ClientSession

        try:
            async with AsyncExitStack() as stack:
                read, write = await stack.enter_async_context(open_transport(self.config, self._env, self._errlog))
                # No sampling/elicitation/roots callbacks: a server cannot ask our model or the user anything.
                session = await stack.enter_async_context(ClientSession(read, write,
                                                                        message_handler=self._on_message))
                await session.initialize()
                tools = await self._list_tools(session)
                self._session = session
                ready.set_result(tools)
                await stop.wait()
        except asyncio.CancelledError:
            if not ready.done():
                ready.set_exception(McpServerError(self.name, "start-up was cancelled"))
            raise
        except BaseException as exc:  # the transport's task group reports a dead process as a group
            why = describe_error(exc)
            if not ready.done():
                ready.set_exception(McpServerError(self.name, f"failed to start ({describe_target(self.config)}): "
                                                              f"{why}{self.stderr_tail()}"))
            elif not self._stopping and self.failure is None:
                self.failure = f"it stopped working ({why})"
                logger.warning("MCP server %s stopped working: %s", self.name, why)
        finally:
            self._session = None
            started = ready.done() and not ready.cancelled() and ready.exception() is None
            if self.failure is None and started:
                self.failure = "it was stopped" if self._stopping else "its connection ended"
            if started and not self._stopping:
                self._restart_later()

    # ---- restarts --------------------------------------------------------------------------------------------------
    def _restart_later(self) -> None:
        """A server that died after it started comes back: bounded tries with backoff (max_restarts)."""
        if self.restarts >= self.config.max_restarts:
            if self.config.max_restarts:
                self.failure = f"{self.failure}; gave up after {self.restarts} restart(s) (max_restarts)"
            return
        self._restarting = asyncio.get_running_loop().create_task(self._restart(), name=f"mcp-restart-{self.name}")

    async def _restart(self) -> None:
        while self.restarts < self.config.max_restarts and not self._stopping:
            self.restarts += 1
            await asyncio.sleep(min(RESTART_BACKOFF_S * 2 ** (self.restarts - 1), RESTART_BACKOFF_MAX_S))
            if self._stopping:
                return
            why = self.failure
            logger.warning("MCP server %s: restart %d of %d (%s)", self.name, self.restarts,
                           self.config.max_restarts, why)
            try:
                tools = await self.start(restart=True)
            except McpServerError as exc:
                self.failure = f"{why}; restart {self.restarts} failed: {exc}"
                continue
            self.failure = None
            if self.on_list_changed is not None:  # what it lists now is vetted like a list_changed
                await self.on_list_changed(tools)
            return
        if not self._stopping:
            self.failure = f"{self.failure}; gave up after {self.restarts} restart(s) (max_restarts)"

    async def _on_message(self, message: Any) -> None:
        """The SDK's message handler: `notifications/tools/list_changed` re-lists the tools in a task of its own (a
        request awaited here would wait on the very loop that reads its answer)."""
        from mcp.types import ServerNotification, ToolListChangedNotification

        if isinstance(message, ServerNotification) and isinstance(message.root, ToolListChangedNotification):
            task = asyncio.get_running_loop().create_task(self._relist(), name=f"mcp-relist-{self.name}")
            self._relisting.add(task)
            task.add_done_callback(self._relisting.discard)

    async def _relist(self) -> None:
        session, handler = self._session, self.on_list_changed
        if session is None or handler is None:
            return
        try:
            tools = await asyncio.wait_for(self._list_tools(session), self.config.timeout_s)
        except Exception as exc:  # the old definitions stay as judged; say why the new list was not read
            logger.warning("MCP server %s: could not re-list its tools: %s", self.name, describe_error(exc))
            return
        await handler(tools)

    async def _list_tools(self, session: Any) -> list[ListedTool]:
        tools: list[ListedTool] = []
        cursor = None
        for _ in range(MAX_TOOL_PAGES):
            page = await session.list_tools(cursor) if cursor else await session.list_tools()
            for item in page.tools:
                annotations = item.annotations.model_dump(exclude_none=True) if item.annotations else None
                tools.append(ListedTool(item.name, item.description, dict(item.inputSchema), annotations or None,
                                        item.title))
            cursor = page.nextCursor
            if not cursor:
                break
        return tools

    async def _abandon(self) -> None:
        """Cancel a failed restart's owner task (its process tree is signalled), keeping the server restartable."""
        owner = self._owner
        if owner is not None and not owner.done():
            owner.cancel()
            with contextlib.suppress(Exception, asyncio.CancelledError):
                await asyncio.wait_for(owner, 8)

    async def stop(self) -> None:
        """Close the session and the transport (stdio: close stdin, then SIGTERM, then SIGKILL). Idempotent."""
        owner = self._owner
        if owner is None:
            return
        self._stopping = True
        restarting, self._restarting = self._restarting, None
        if restarting is not None and restarting is not asyncio.current_task():
            restarting.cancel()
            with contextlib.suppress(Exception, asyncio.CancelledError):
                await restarting
            owner = self._owner or owner
        if self._stop is not None:
            self._stop.set()
        try:
            if self.startup_ms is None:  # still in start-up (hung, or failed): nothing to close politely
                raise TimeoutError
            await asyncio.wait_for(asyncio.shield(owner), 8)
        except (Exception, asyncio.CancelledError):  # stuck in start-up or ignoring stdin EOF: cancel it
            owner.cancel()
            with contextlib.suppress(Exception, asyncio.CancelledError):  # the process tree was signalled
                await asyncio.wait_for(owner, 8)
        self._errlog.close()

    # ---- calls -----------------------------------------------------------------------------------------------------
    def _unavailable(self) -> str:
        pending = self._restarting is not None and not self._restarting.done()
        restarting = not self._stopping and (pending or self.restarts < self.config.max_restarts)
        why = f"{self.failure or 'it is not running'}" + ("; it is being restarted, try again shortly"
                                                           if restarting else "")
        return f"MCP server {self.name} is not available: {why}"

    async def call(self, tool: str, arguments: dict[str, Any], meta: dict[str, str] | None = None) -> ToolOutput:
        """Call `tool` with arguments already checked against its schema, `meta` as the request's `_meta` (the
        trace context, for a trusted server). Never raises: failures are ok=False."""
        label = f"{self.name}.{tool}"
        session, owner = self._session, self._owner
        if session is None or owner is None or owner.done():
            return ToolOutput.failure(self._unavailable())
        request_id: list[int] = []
        pending = asyncio.ensure_future(self._call_tool(session, tool, arguments, request_id, meta))
        # Race the call against the server's own task: a process that dies mid-call ends the wait at once.
        try:
            done, _ = await asyncio.wait({pending, owner}, timeout=self.config.timeout_s,
                                         return_when=asyncio.FIRST_COMPLETED)
        except asyncio.CancelledError:  # the turn was cancelled: do not leave the request behind
            pending.cancel()
            raise
        if pending not in done:
            pending.cancel()
            if not owner.done():
                await self._cancel_on_server(session, request_id, "timeout_s")
            if owner.done():
                return ToolOutput.failure(f"MCP server {self.name} died during the call to {tool}: "
                                          f"{self.failure or 'its process ended'}")
            return ToolOutput.failure(f"MCP server {self.name} did not answer the call to {tool} within "
                                      f"{self.config.timeout_s:g} s (timeout_s)")
        try:
            result = pending.result()
        except Exception as exc:
            why = describe_error(exc)
            if not is_disconnect(exc):
                return ToolOutput.failure(f"MCP server {self.name} could not run {tool}: {why}")
            self._mark_dead("its connection closed" + ("" if why.lower() == "connection closed" else f" ({why})"))
            return ToolOutput.failure(f"MCP server {self.name} died during the call to {tool}: {self.failure}"
                                      f"{self.stderr_tail()}")
        self.restarts = 0  # it answers: a later death gets the full number of restarts again
        return to_output(result, label)

    @staticmethod
    async def _call_tool(session: Any, tool: str, arguments: dict[str, Any], request_id: list[int],
                         meta: dict[str, str] | None = None) -> Any:
        # The SDK numbers requests from `_request_id` and call_tool reaches send_request without awaiting anything
        # before, so the id read here is the call's: the one a cancellation must name.
        request_id.append(session._request_id)
        return await session.call_tool(tool, arguments, meta=meta)

    async def _cancel_on_server(self, session: Any, request_id: list[int], reason: str) -> None:
        """Tell the server to stop working on a call we gave up on (MCP's notifications/cancelled); best effort."""
        from mcp.types import CancelledNotification, CancelledNotificationParams, ClientNotification

        if not request_id:
            return
        notice = CancelledNotification(params=CancelledNotificationParams(requestId=request_id[0], reason=reason))
        try:
            await asyncio.wait_for(session.send_notification(ClientNotification(notice)), 2)
        except Exception as exc:  # the server is gone or stuck: the call already failed with a clear error
            logger.info("MCP server %s: could not send the cancellation: %s", self.name, describe_error(exc))

    def _mark_dead(self, why: str) -> None:
        """Stop using the server and let the owner task close the transport (which reaps the process)."""
        if self.failure is None:
            self.failure = why
        self._session = None
        if self._stop is not None:
            self._stop.set()

    def stderr_tail(self) -> str:
        """'; its stderr ends: ...' from what the server wrote to stderr, or ''."""
        try:
            size = self._errlog.seek(0, 2)
            self._errlog.seek(max(0, size - STDERR_TAIL_CHARS * 4))
            text = self._errlog.read().decode("utf-8", errors="replace").strip()
        except (OSError, ValueError):
            return ""
        lines = [line for line in text.splitlines() if line.strip()][-STDERR_TAIL_LINES:]
        tail = " | ".join(line.strip() for line in lines)[-STDERR_TAIL_CHARS:]
        return f"; its stderr ends: {tail}" if tail else ""

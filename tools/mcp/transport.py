"""Open one MCP server's transport with the official SDK: a stdio subprocess or a streamable HTTP endpoint.

Secrets come from the assistant's environment by the names the policy gives. A stdio server gets the SDK's small
default environment (HOME, PATH, USER, ...) plus exactly the variables the policy names, never the whole of ours.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from typing import IO, Any

from guards.policy.mcp_config import McpServerConfig


class McpConfigError(ValueError):
    """The server cannot be started as configured (a named environment variable is missing, ...)."""


def server_env(config: McpServerConfig, env: Mapping[str, str]) -> dict[str, str]:
    """The variables the policy passes to a stdio server, read from `env`; raises McpConfigError naming the gap."""
    out: dict[str, str] = {}
    for target, source in config.env.items():
        if source not in env:
            raise McpConfigError(f"environment variable {source} is not set (tools.mcp {config.name}: env.{target})")
        out[target] = env[source]
    return out


def server_headers(config: McpServerConfig, env: Mapping[str, str]) -> dict[str, str]:
    out: dict[str, str] = {}
    for header, ref in config.headers.items():
        if ref.env not in env:
            raise McpConfigError(f"environment variable {ref.env} is not set (tools.mcp {config.name}: "
                                 f"headers.{header})")
        out[header] = ref.prefix + env[ref.env]
    return out


TRACE_HEADERS = ("traceparent", "tracestate")


def trace_headers_of(body: bytes) -> dict[str, str]:
    """The W3C trace context a JSON-RPC request carries in `params._meta` (put there only for a server whose policy
    says `trace_context: true`), as HTTP headers; {} for anything else."""
    try:
        message = json.loads(body)
    except ValueError:  # not JSON (nothing of ours): no header
        return {}
    params = message.get("params") if isinstance(message, dict) else None
    meta = params.get("_meta") if isinstance(params, dict) else None
    if not isinstance(meta, dict):
        return {}
    return {key: meta[key] for key in TRACE_HEADERS if isinstance(meta.get(key), str)}


async def _trace_headers(request: Any) -> None:  # an httpx request hook
    import httpx

    if request.method != "POST":
        return
    try:
        body = request.content
    except httpx.RequestNotRead:  # a streamed body (the SDK sends none): nothing to read the context from
        return
    request.headers.update(trace_headers_of(body))


def describe_target(config: McpServerConfig) -> str:
    """What the server is, for messages: its command line or its URL (never a secret: those are in env/headers)."""
    if config.command is not None:
        return " ".join([config.command, *config.args])
    return str(config.url)


@asynccontextmanager
async def open_transport(
    config: McpServerConfig, env: Mapping[str, str], errlog: IO[Any]
) -> AsyncIterator[tuple[Any, Any]]:
    """(read stream, write stream) for an mcp.ClientSession. Enter and exit in the same task (anyio scopes)."""
    if config.command is not None:
        from mcp.client.stdio import StdioServerParameters, stdio_client

        params = StdioServerParameters(command=config.command, args=list(config.args),
                                       env=server_env(config, env), cwd=config.cwd)
        async with stdio_client(params, errlog=errlog) as (read, write):
            yield read, write
        return
    import httpx
    from mcp.client.streamable_http import streamable_http_client
    from mcp.shared._httpx_utils import create_mcp_http_client

    # Reads may take as long as a call may; connecting should be quick.
    timeout = httpx.Timeout(config.timeout_s, connect=min(config.startup_timeout_s, 10.0))
    async with create_mcp_http_client(headers=server_headers(config, env), timeout=timeout) as client, \
            streamable_http_client(config.url, http_client=client) as (read, write, _session_id):
        if config.trace_context:  # a trusted server: a call's traceparent as an HTTP header too, for its HTTP stack
            client.event_hooks = {**client.event_hooks,
                                  "request": [*client.event_hooks.get("request", []), _trace_headers]}
        yield read, write

"""`tools.mcp`: the Model Context Protocol servers whose tools the agent may call.

Secrets never sit in the policy file: a stdio server's environment and an HTTP server's headers name environment
variables of the assistant's own process, read when the server starts.
"""

from __future__ import annotations

import re
from typing import Annotated, Literal

from pydantic import AfterValidator, Field, model_validator

from guards.policy.base import Flag, NonEmptyStr, PolicyModel, Seconds

_SERVER_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_-]*$")
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_HEADER_NAME = re.compile(r"^[A-Za-z0-9!#$%&'*+.^_`|~-]+$")  # an HTTP token (RFC 9110)
_TOOL_NAME = re.compile(r"^[A-Za-z0-9_.-]{1,128}$")  # what MCP allows in a tool name


def _matching(pattern: re.Pattern[str], meaning: str):  # -> validator for AfterValidator
    def check(value: str) -> str:
        if not pattern.match(value):
            raise ValueError(f"expected {meaning} (got {value!r})")
        return value

    return check


ServerName = Annotated[NonEmptyStr, AfterValidator(_matching(
    _SERVER_NAME, "a server name (letters, digits, _ and -, not starting with a digit; no dots: `server.tool` "
    "names one server's tool)"))]
EnvName = Annotated[NonEmptyStr, AfterValidator(_matching(
    _ENV_NAME, "the NAME of an environment variable (letters, digits, _); its value is read when the server "
    "starts, so no secret is written in the policy"))]
HeaderName = Annotated[NonEmptyStr, AfterValidator(_matching(_HEADER_NAME, "an HTTP header name"))]
McpToolName = Annotated[NonEmptyStr, AfterValidator(_matching(
    _TOOL_NAME, "the server's own name of a tool (letters, digits, _ . -)"))]


class HeaderFromEnv(PolicyModel):
    """One HTTP header whose value is `prefix` + the value of the environment variable `env`."""

    env: EnvName
    prefix: str = Field(default="", strict=True)  # e.g. "Bearer "

    @model_validator(mode="before")
    @classmethod
    def _not_a_value(cls, data: object) -> object:
        if isinstance(data, str):
            raise ValueError("write a header as {env: VARIABLE_NAME, prefix: \"Bearer \"}: its value is read from the "
                             "environment, never written in the policy file")
        return data


class McpServerConfig(PolicyModel):
    """One MCP server: a command started over stdio, or a streamable HTTP endpoint."""

    name: ServerName
    # stdio: the command and its arguments; `env` maps the server's variable to the assistant's variable it copies.
    command: NonEmptyStr | None = None
    args: tuple[Annotated[str, Field(strict=True)], ...] = ()
    env: dict[EnvName, EnvName] = Field(default_factory=dict)
    cwd: NonEmptyStr | None = None
    # streamable HTTP
    url: NonEmptyStr | None = None
    headers: dict[HeaderName, HeaderFromEnv] = Field(default_factory=dict)
    # Which of the server's tools the model sees (the server's own names): None = all, minus `deny`.
    allow: tuple[McpToolName, ...] | None = None
    deny: tuple[McpToolName, ...] = ()
    # Overrides what the tool's annotations say (tool without annotations: side effects).
    side_effects: dict[McpToolName, Flag] = Field(default_factory=dict)
    timeout_s: Seconds = 30.0  # one tool call
    startup_timeout_s: Seconds = 30.0  # start, initialize and list the tools
    required: Flag = False  # true: the agent does not start without this server
    # A tool definition that is new or changed since `assistant tools pin` (POLICY.tools.lock): withheld until
    # re-pinned (block), asked (ask: withheld like block where no human is asked), or only judged (allow).
    on_change: Literal["block", "ask", "allow"] = "block"
    # A server that dies after it started is started again, at most this many times in a row, waiting 0.5 s, 1 s,
    # 2 s, ... (capped at 8 s) between tries; its definitions are vetted again like on list_changed. 0: stays down.
    max_restarts: Annotated[int, Field(strict=True, ge=0, le=10)] = 3
    # Send the turn's W3C trace context with each call (params._meta.traceparent, and over HTTP the `traceparent`
    # header too) when the turn is traced: only for a server the deployer runs and trusts (docs/OBSERVABILITY.md).
    trace_context: Flag = False

    @model_validator(mode="after")
    def _one_transport(self) -> McpServerConfig:
        if (self.command is None) == (self.url is None):
            raise ValueError(f"server {self.name}: write exactly one of `command` (stdio) or `url` (streamable HTTP)")
        if self.url is not None:
            if not re.match(r"^https?://[^\s/]+", self.url):
                raise ValueError(f"server {self.name}: `url` must be an http:// or https:// address (got {self.url!r})")
            stray = [key for key in ("args", "env", "cwd") if key in self.model_fields_set]
            if stray:
                raise ValueError(f"server {self.name}: {', '.join(stray)} only apply to a `command` (stdio) server")
        elif "headers" in self.model_fields_set:
            raise ValueError(f"server {self.name}: `headers` only apply to a `url` (streamable HTTP) server")
        return self


def _unique_names(servers: tuple[McpServerConfig, ...]) -> tuple[McpServerConfig, ...]:
    seen: set[str] = set()
    for server in servers:
        if server.name in seen:
            raise ValueError(f"two MCP servers are named {server.name!r}; names must be unique")
        seen.add(server.name)
    return servers


McpServers = Annotated[tuple[McpServerConfig, ...], AfterValidator(_unique_names)]

"""One MCP server tool as a `Tool`: its JSON schema shown to the model and checked before every call."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from tools.base import Tool, ToolArgumentError, ToolOutput, _strip_titles

# (remote tool name, validated arguments) -> the call's output; never raises (see tools.mcp.server).
Caller = Callable[[str, dict[str, Any]], Awaitable[ToolOutput]]
MAX_DESCRIPTION_CHARS = 2000  # a server's description goes into every prompt: bound what one server can add


def side_effects_from(annotations: Mapping[str, Any] | None, override: bool | None = None) -> bool:
    """Whether calls count as side-effecting (approvals, the untrusted-content rule).

    The policy's override wins. Otherwise only a tool that declares itself read-only AND closed-world is free of side
    effects: a read-only tool that reaches the open world (`openWorldHint`, true by the MCP spec's default) can still
    carry data out in its arguments. No annotations: side effects (annotations are hints from the server).
    """
    if override is not None:
        return override
    if not annotations:
        return True
    return not (annotations.get("readOnlyHint") is True and annotations.get("openWorldHint") is False)


def schema_problem(schema: Any) -> str | None:
    """Why `schema` cannot describe a tool's arguments, or None."""
    from jsonschema import exceptions, validators

    if not isinstance(schema, dict) or schema.get("type", "object") != "object":
        return "its input schema is not a JSON schema of an object"
    try:
        validators.validator_for(schema).check_schema(schema)
    except exceptions.SchemaError as exc:
        return f"its input schema is invalid: {exc.message}"
    return None


def shown_schema(schema: dict[str, Any]) -> dict[str, Any]:
    """The schema as the prompt shows it: no `$schema` and no titles (they cost tokens and say nothing new)."""
    shown = _strip_titles({k: v for k, v in schema.items() if k != "$schema"})
    shown.setdefault("type", "object")
    shown.setdefault("properties", {})
    return shown


class McpTool(Tool):
    """A tool offered by an MCP server. `name` is what the model calls; `remote_name` what the server calls it."""

    builtin = False

    def __init__(self, *, name: str, server: str, remote_name: str, description: str | None,
                 input_schema: dict[str, Any], annotations: Mapping[str, Any] | None, side_effects: bool,
                 caller: Caller) -> None:
        self.name = name
        self.server = server
        self.remote_name = remote_name
        text = (description or "").strip() or f"The {remote_name} tool of the {server} MCP server."
        self.description = text if len(text) <= MAX_DESCRIPTION_CHARS else text[: MAX_DESCRIPTION_CHARS - 1] + "…"
        self.input_schema = input_schema
        self.annotations = dict(annotations or {})
        self.side_effects = side_effects
        self._caller = caller
        self._parameters = shown_schema(input_schema)

    @property
    def qualified_name(self) -> str:
        return f"{self.server}.{self.remote_name}"

    @property
    def parameters(self) -> dict[str, Any]:
        return self._parameters

    def __repr__(self) -> str:
        return f"McpTool({self.name!r}, server={self.server!r}, side_effects={self.side_effects})"

    def validate(self, arguments: Mapping[str, Any]) -> dict[str, Any]:
        """The arguments unchanged when the server's input schema accepts them; raises ToolArgumentError."""
        from jsonschema import validators

        if not isinstance(arguments, Mapping):
            raise ToolArgumentError(f"arguments must be a JSON object, not {type(arguments).__name__}")
        checked = dict(arguments)
        validator = validators.validator_for(self.input_schema)(self.input_schema)
        errors = sorted(validator.iter_errors(checked), key=lambda e: list(e.absolute_path))
        if errors:
            parts = []
            for error in errors[:5]:
                where = ".".join(str(p) for p in error.absolute_path)
                parts.append(f"{where}: {error.message}" if where else error.message)
            raise ToolArgumentError("; ".join(parts))
        return checked

    async def call(self, arguments: dict[str, Any]) -> ToolOutput:
        return await self._caller(self.remote_name, arguments)

"""One MCP server tool as a `Tool`: its JSON schema shown to the model and checked before every call."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from model import telemetry
from model.telemetry.propagation import outgoing_headers
from tools.base import Tool, ToolArgumentError, ToolOutput, _strip_titles

# (remote tool name, validated arguments, the request's `_meta` or None) -> the call's output; never raises (see
# tools.mcp.server).
Caller = Callable[[str, dict[str, Any], dict[str, str] | None], Awaitable[ToolOutput]]
MAX_DESCRIPTION_CHARS = 2000  # a server's description goes into every prompt: bound what one server can add
MAX_PARAMETER_DESCRIPTION_CHARS = 500  # each `description` inside the input schema (parameters, nested ones)


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


def capped(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _cap_descriptions(node: Any) -> Any:
    if isinstance(node, list):
        return [_cap_descriptions(item) for item in node]
    if not isinstance(node, dict):
        return node
    return {key: capped(value, MAX_PARAMETER_DESCRIPTION_CHARS) if key == "description" and isinstance(value, str)
            else _cap_descriptions(value) for key, value in node.items()}


def shown_schema(schema: dict[str, Any]) -> dict[str, Any]:
    """The schema as the prompt shows it: no `$schema`, no titles (they cost tokens and say nothing new), and every
    description in it cut at MAX_PARAMETER_DESCRIPTION_CHARS."""
    shown = _cap_descriptions(_strip_titles({k: v for k, v in schema.items() if k != "$schema"}))
    shown.setdefault("type", "object")
    shown.setdefault("properties", {})
    return shown


class McpTool(Tool):
    """A tool offered by an MCP server. `name` is what the model calls; `remote_name` what the server calls it."""

    builtin = False

    def __init__(self, *, name: str, server: str, remote_name: str, description: str | None,
                 input_schema: dict[str, Any], annotations: Mapping[str, Any] | None, side_effects: bool,
                 caller: Caller, title: str | None = None, sha256: str = "", trace_context: bool = False) -> None:
        self.name = name
        self.server = server
        self.remote_name = remote_name
        self.caller = caller
        self.trace_context = trace_context  # the policy's `trace_context`: a trusted server gets the traceparent
        self.update(description=description, input_schema=input_schema, annotations=annotations,
                    side_effects=side_effects, title=title, sha256=sha256)
        self.withheld: str | None = None  # why the model may no longer see or call it (a rug pull, a removal)

    def update(self, *, description: str | None, input_schema: dict[str, Any],
               annotations: Mapping[str, Any] | None, side_effects: bool, title: str | None, sha256: str) -> None:
        """Take a (re-listed) definition; its judgement must be set again before the model may read it."""
        text = (description or "").strip() or f"The {self.remote_name} tool of the {self.server} MCP server."
        self.description = capped(text, MAX_DESCRIPTION_CHARS)
        self.input_schema = input_schema
        self.annotations = dict(annotations or {})
        self.side_effects = side_effects
        self.title = title
        self.sha256 = sha256  # of the server's definition as listed (the pin)
        self._parameters = shown_schema(input_schema)
        self.judgement: Any = None  # the passed `tool_definition` judgement of this definition (tools.mcp.vetting)

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
        if self.withheld:
            return ToolOutput.failure(f"MCP tool {self.qualified_name} is withheld: {self.withheld}", refused=True)
        # A client span under the tool run. The trace context goes to the server only when the policy says it is
        # trusted (`trace_context`): a third-party server learns nothing of the trace.
        with telemetry.span(f"tools/call {self.qualified_name}", {"mcp.server": self.server,
                                                                  "mcp.tool": self.remote_name,
                                                                  "mcp.method.name": "tools/call"},
                            kind="client") as span:
            meta = outgoing_headers(telemetry.current()) if self.trace_context and span is not None else None
            output = await self.caller(self.remote_name, arguments, meta)
            telemetry.annotate(span, {"assistant.tool.ok": output.ok})
            return output

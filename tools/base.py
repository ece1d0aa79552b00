"""What every tool is: a name, a JSON schema for its arguments, a side-effect flag, and `async run`."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ValidationError

from model.messages import ToolDefinition


@dataclass(frozen=True)
class ToolOutput:
    """The result of one tool call.

    `ok` is false when the tool failed or refused; `output` is what goes back to the model; `error` says what went
    wrong in words; `limits_hit` names the sandbox limits that stopped the run. `refused` marks a refusal by the
    policy (nothing ran), which the CLI reports with its own exit code.
    """

    ok: bool
    output: str
    error: str | None = None
    limits_hit: tuple[str, ...] = ()
    refused: bool = False

    def to_json(self) -> dict[str, Any]:
        """The four keys of the CLI contract, exactly."""
        return {"ok": self.ok, "output": self.output, "error": self.error, "limits_hit": list(self.limits_hit)}

    @classmethod
    def failure(cls, error: str, *, output: str = "", refused: bool = False) -> ToolOutput:
        return cls(ok=False, output=output or error, error=error, refused=refused)


class ToolArgumentError(ValueError):
    """The arguments do not fit the tool's schema; the message is written for the model to correct itself."""


class Tool(ABC):
    """A tool the model may call.

    Arguments are described by a pydantic model (`args_model`, `extra="forbid"`): the JSON schema shown to the model
    is derived from it and every call is validated against it before anything runs.
    """

    name: str
    description: str
    args_model: type[BaseModel]
    side_effects: bool = False  # sends, writes, pays: such calls are gated after untrusted content
    builtin: bool = False  # one of Llama 3.1's built-in tools (brave_search, wolfram_alpha, code_interpreter)
    server: str | None = None  # the MCP server offering it; None for every other tool

    @property
    def qualified_name(self) -> str | None:
        """`server.tool` for an MCP tool (valid whatever name it was given to avoid a clash); None otherwise."""
        return None

    @property
    def parameters(self) -> dict[str, Any]:
        return json_schema_of(self.args_model)

    def definition(self) -> ToolDefinition:
        return ToolDefinition(name=self.name, description=self.description, parameters=self.parameters)

    def validate(self, arguments: Mapping[str, Any]) -> dict[str, Any]:
        """The validated arguments (converted to their Python types); raises ToolArgumentError."""
        if not isinstance(arguments, Mapping):
            raise ToolArgumentError(f"arguments must be a JSON object, not {type(arguments).__name__}")
        try:
            checked = self.args_model.model_validate(dict(arguments))
        except ValidationError as exc:
            raise ToolArgumentError(describe_validation_error(exc)) from None
        return {field: getattr(checked, field) for field in type(checked).model_fields}

    async def run(self, arguments: Mapping[str, Any]) -> ToolOutput:
        """Validate, then call. Never raises for bad arguments or a tool failure: returns ok=False instead."""
        try:
            checked = self.validate(arguments)
        except ToolArgumentError as exc:
            return ToolOutput.failure(f"invalid arguments for {self.name}: {exc}")
        return await self.call(checked)

    @abstractmethod
    async def call(self, arguments: dict[str, Any]) -> ToolOutput:
        """Run with validated arguments."""


def describe_validation_error(exc: ValidationError) -> str:
    parts = []
    for error in exc.errors(include_url=False):
        where = ".".join(str(part) for part in error["loc"])
        parts.append(f"{where}: {error['msg']}" if where else error["msg"])
    return "; ".join(parts)


# Keys whose values are data, not sub-schemas: never strip inside them.
_DATA_KEYS = frozenset({"default", "const", "enum", "examples"})
_NAMED_SCHEMAS = frozenset({"properties", "$defs", "definitions", "patternProperties"})


def _strip_titles(node: Any) -> Any:
    if isinstance(node, list):
        return [_strip_titles(item) for item in node]
    if not isinstance(node, dict):
        return node
    out: dict[str, Any] = {}
    for key, value in node.items():
        if key == "title" and isinstance(value, str):
            continue  # pydantic's auto titles only repeat the names and cost prompt tokens
        if key in _DATA_KEYS:
            out[key] = value
        elif key in _NAMED_SCHEMAS and isinstance(value, dict):
            out[key] = {name: _strip_titles(sub) for name, sub in value.items()}
        else:
            out[key] = _strip_titles(value)
    return out


def json_schema_of(model: type[BaseModel]) -> dict[str, Any]:
    """The JSON schema pydantic derives for `model`, without the auto-generated titles."""
    schema = _strip_titles(model.model_json_schema())
    schema.setdefault("properties", {})
    return schema

"""What a constrained completion may be: pure data, read by the backends that decode under it.

An `OutputConstraint` lists the texts a completion may be, as alternatives; each alternative is a sequence of
pieces, literal text (`str`, e.g. a tool call's `<function=name>` prefix) or a JSON value (`JsonPiece`, against a
JSON Schema). After the whole of one alternative the model may only end its message (a stop token). The prompt is
never touched: the constraint applies to the generated answer only, inside Meta's Llama 3.1 format.

`tool_call_constraint` writes a forced call in the prompt's tool format (`model.prompt_meta.encode_call`'s forms):
`json` is `{"type": "function", "name": ..., "parameters": {...}}`, `function_tag` is
`<function=name>{...}</function>`.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

ANY_OBJECT: dict[str, Any] = {"type": "object"}  # `json_object`: any JSON object


@dataclass(frozen=True)
class JsonPiece:
    """A JSON value matching `schema` (kept as JSON text so the constraint is hashable; key order kept: the model
    writes the properties in the schema's order)."""

    schema_text: str

    @classmethod
    def of(cls, schema: Mapping[str, Any]) -> JsonPiece:
        return cls(json.dumps(schema, ensure_ascii=False))

    @property
    def schema(self) -> dict[str, Any]:
        value: dict[str, Any] = json.loads(self.schema_text)
        return value


Piece = str | JsonPiece


@dataclass(frozen=True)
class OutputConstraint:
    """The completion is exactly one of `choices` (each a sequence of pieces), then a stop token."""

    choices: tuple[tuple[Piece, ...], ...]
    what: str  # for messages: "response_format", "tool_choice"

    def __post_init__(self) -> None:
        if not self.choices or not all(self.choices):
            raise ValueError("a constraint needs at least one non-empty choice")

    def json_schema(self) -> dict[str, Any] | None:
        """The constraint as one JSON Schema (for a server's own structured output: vLLM), or None when a choice
        has literal text around its JSON (the `function_tag` format)."""
        schemas = [choice[0].schema for choice in self.choices if len(choice) == 1 and isinstance(choice[0], JsonPiece)]
        if len(schemas) != len(self.choices):
            return None
        return schemas[0] if len(schemas) == 1 else {"anyOf": schemas}


def matches(constraint: OutputConstraint, text: str) -> bool:
    """Whether `text` (a completion without its stop token) is one of the constraint's choices: for a backend that
    cannot mask tokens but knows its whole output in advance (the scripted test models)."""
    from jsonschema import Draft202012Validator

    decoder = json.JSONDecoder()

    def fits(choice: tuple[Piece, ...]) -> bool:
        at = 0
        for piece in choice:
            if isinstance(piece, str):
                if not text.startswith(piece, at):
                    return False
                at += len(piece)
                continue
            try:
                value, at = decoder.raw_decode(text, at)
            except json.JSONDecodeError:
                return False
            if not Draft202012Validator(piece.schema).is_valid(value):
                return False
        return at == len(text)

    return any(fits(choice) for choice in constraint.choices)


def json_constraint(schema: Mapping[str, Any] | None, what: str = "response_format") -> OutputConstraint:
    """An answer that is one JSON value of `schema` (None: any JSON object, OpenAI's `json_object`)."""
    return OutputConstraint(((JsonPiece.of(schema if schema is not None else ANY_OBJECT),),), what)


def tool_call_pieces(name: str, parameters: Mapping[str, Any], tool_format: str) -> tuple[Piece, ...]:
    """One call of tool `name` with arguments matching its `parameters` schema, in the prompt's tool format."""
    if tool_format == "function_tag":
        return (f"<function={name}>", JsonPiece.of(parameters), "</function>")
    if tool_format != "json":
        raise ValueError(f"a forced tool call cannot be written in the {tool_format!r} tool format")
    call = {
        "type": "object",
        "properties": {"type": {"const": "function"}, "name": {"const": name}, "parameters": dict(parameters)},
        "required": ["type", "name", "parameters"],
        "additionalProperties": False,
    }
    return (JsonPiece.of(call),)


def tool_call_constraint(tools: Sequence[tuple[str, Mapping[str, Any]]], tool_format: str) -> OutputConstraint:
    """A call of one of `tools` (name, parameters schema): `tool_choice` `required` or a named function."""
    return OutputConstraint(tuple(tool_call_pieces(name, schema, tool_format) for name, schema in tools),
                            "tool_choice")


__all__ = ["ANY_OBJECT", "JsonPiece", "OutputConstraint", "Piece", "json_constraint", "matches",
           "tool_call_constraint"]

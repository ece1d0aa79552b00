"""Structured output and forced tool calls: a request's `response_format` and `tool_choice` as the constraints the
main model decodes under (`model.constraint`).

- `response_format` `json_object` / `json_schema`: every model call of the turn is constrained to a JSON answer of
  that schema, or, when tools are offered and `tool_choice` is `auto`, to one call of one of them in the prompt's tool
  format (so the model can still use its tools before it answers).
- `tool_choice` `required` / `{"type": "function", "function": {"name": ...}}`: the turn's first model call (and
  a repeat of it with the same prompt, e.g. after a discarded speculative start) must be a call of one of the tools
  / of that tool, its arguments against the tool's schema. The call then takes the normal path (the `tool_call`
  guards, the policy's rules, approval); later calls of the turn are free again (or `response_format`'s).

Either is a 400 naming the field when the main model's backend cannot decode under it
(`ModelBackend.constraint_problem`): never an answer that ignores it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from assistant.server.errors import ApiError
from model.backends.base import ModelBackend
from model.constraint import OutputConstraint, json_constraint, tool_call_constraint, tool_call_pieces


@dataclass(frozen=True)
class Structure:
    """What the request asked for, before the tools are known: `answer` is the JSON Schema of a JSON answer (None:
    free text); `forced` the names a forced call may take (empty: any tool, `required`; None: not forced)."""

    answer: dict[str, Any] | None = None
    forced: tuple[str, ...] | None = None


def _bad(message: str, param: str) -> ApiError:
    return ApiError(400, message, "invalid_request", param=param)


def parse_response_format(raw: Any) -> dict[str, Any] | None:
    """The answer's JSON Schema (`{"type": "object"}` for `json_object`), or None for free text."""
    if raw is None:
        return None
    kind = raw.get("type") if isinstance(raw, dict) else None
    if kind == "text":
        return None
    if kind == "json_object":
        return {"type": "object"}
    if kind != "json_schema":
        raise _bad('response_format must be {"type": "text"}, {"type": "json_object"} or '
                   '{"type": "json_schema", "json_schema": {...}}', "response_format")
    spec = raw.get("json_schema")
    schema = spec.get("schema") if isinstance(spec, dict) else None
    if not isinstance(schema, dict):
        raise _bad("response_format.json_schema.schema must be a JSON Schema object", "response_format")
    from jsonschema import exceptions, validators

    try:
        validators.validator_for(schema).check_schema(schema)
    except exceptions.SchemaError as exc:
        raise _bad(f"response_format.json_schema.schema is not a valid JSON Schema: {exc.message}",
                   "response_format") from exc
    except RecursionError as exc:
        raise _bad("response_format.json_schema.schema is nested too deeply to check", "response_format") from exc
    return schema


def parse_tool_choice(raw: Any) -> tuple[str, ...] | None:
    """None for `auto` / `none` (handled by the tools list); () for `required`; (name,) for a named function."""
    if raw in (None, "auto", "none"):
        return None
    if raw == "required":
        return ()
    function = raw.get("function") if isinstance(raw, dict) and raw.get("type") == "function" else None
    name = function.get("name") if isinstance(function, dict) else None
    if not isinstance(name, str) or not name:
        raise _bad('tool_choice must be "auto", "none", "required" or {"type": "function", "function": {"name": '
                   '...}}', "tool_choice")
    return (name,)


def parse_structure(body: Mapping[str, Any]) -> Structure:
    return Structure(parse_response_format(body.get("response_format")), parse_tool_choice(body.get("tool_choice")))


@dataclass(frozen=True)
class Constraints:
    every_call: OutputConstraint | None = None  # response_format
    first_call: OutputConstraint | None = None  # tool_choice: the turn's first prompt only


def build_constraints(structure: Structure, tools: Sequence[tuple[str, Mapping[str, Any]]], tool_format: str,
                      backend: ModelBackend) -> Constraints:
    """The request's constraints over `tools` (name, parameters schema: the policy's and the client's), checked
    against the backend (a 400 naming the field it cannot honour)."""
    first = None
    if structure.forced is not None:
        names = structure.forced or tuple(name for name, _ in tools)
        known = dict(tools)
        missing = [name for name in names if name not in known]
        if not names or missing:
            raise _bad(f"tool_choice names a function that is not among the request's tools: {missing[0]}" if missing
                       else 'tool_choice "required" needs at least one tool', "tool_choice")
        try:
            first = tool_call_constraint([(name, known[name]) for name in names], tool_format)
        except ValueError as exc:
            raise _bad(str(exc), "tool_choice") from exc
    every = None
    if structure.answer is not None:
        every = json_constraint(structure.answer)
        try:  # the model may still call a tool first (tool_choice auto)
            calls = tuple(tool_call_pieces(name, schema, tool_format) for name, schema in tools)
        except ValueError as exc:
            raise _bad(f"{exc} (tools offered with response_format)", "response_format") from exc
        every = OutputConstraint((*every.choices, *calls), "response_format")
    for constraint, param in ((first, "tool_choice"), (every, "response_format")):
        if constraint is not None and (problem := backend.constraint_problem(constraint)) is not None:
            raise ApiError(400, f"{param} cannot be honoured by this model backend: {problem}", "invalid_request",
                           param=param)
    return Constraints(every, first)


__all__ = ["Constraints", "Structure", "build_constraints", "parse_response_format", "parse_structure",
           "parse_tool_choice"]

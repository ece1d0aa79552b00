"""Custom tools: schemas derived by pydantic from typed functions, arguments validated before the call."""

from __future__ import annotations

import sys
import types

import pytest
from pydantic import BaseModel

from model.messages import ToolDefinition
from tools.custom import FunctionTool, ToolLoadError, load_custom, parse_docstring, tool


class Address(BaseModel):
    street: str
    city: str


@tool(side_effects=True)
def send_letter(to: str, address: Address, copies: int = 1, urgent: bool = False) -> dict[str, object]:
    """Send a paper letter.

    Args:
        to: Who receives it.
        address: Where it goes.
        copies: How many copies
            to print.
    """
    return {"to": to, "city": address.city, "copies": copies, "urgent": urgent}


@tool
async def shout(text: str) -> str:
    """Upper-case a text."""
    return text.upper()


def test_schema_is_derived_from_the_signature_and_docstring() -> None:
    definition = send_letter.definition()
    assert isinstance(definition, ToolDefinition)
    assert definition.name == "send_letter" and definition.description == "Send a paper letter."
    params = definition.parameters
    assert params["type"] == "object" and params["additionalProperties"] is False
    assert params["required"] == ["to", "address"]
    assert params["properties"]["to"] == {"type": "string", "description": "Who receives it."}
    assert params["properties"]["copies"] == {"type": "integer", "default": 1,
                                              "description": "How many copies to print."}
    assert params["properties"]["address"]["$ref"] == "#/$defs/Address"
    assert set(params["$defs"]["Address"]["properties"]) == {"street", "city"}
    assert "title" not in params and "title" not in params["properties"]["to"]
    assert send_letter.side_effects and not shout.side_effects


def test_decorated_function_is_still_callable() -> None:
    assert send_letter("Ann", Address(street="1 Main", city="Oslo"))["city"] == "Oslo"


async def test_valid_arguments_run_and_results_are_json() -> None:
    out = await send_letter.run({"to": "Ann", "address": {"street": "1 Main", "city": "Oslo"}, "copies": 2})
    assert out.ok and out.output == '{"to":"Ann","city":"Oslo","copies":2,"urgent":false}'
    assert (await shout.run({"text": "hi"})).output == "HI"


@pytest.mark.parametrize(
    ("arguments", "problem"),
    [
        ({"address": {"street": "x", "city": "y"}}, "to: Field required"),
        ({"to": "Ann", "address": {"street": "x"}}, "address.city: Field required"),
        ({"to": "Ann", "address": {"street": "x", "city": "y"}, "copies": "many"}, "copies: Input should be a valid"),
        ({"to": "Ann", "address": {"street": "x", "city": "y"}, "bcc": "Eve"}, "bcc: Extra inputs are not permitted"),
    ],
)
async def test_invalid_arguments_become_an_error_for_the_model(arguments: dict, problem: str) -> None:
    calls: list[str] = []

    @tool
    def record(to: str, address: Address, copies: int = 1) -> str:
        """Record a call."""
        calls.append(to)
        return "done"

    out = await record.run(arguments)
    assert not out.ok and problem in (out.error or "") and out.output == out.error
    assert calls == []  # never called with bad arguments


async def test_a_failing_tool_returns_an_error_not_an_exception() -> None:
    @tool
    def broken(x: int) -> int:
        """Always fails."""
        raise RuntimeError("disk on fire")

    out = await broken.run({"x": 1})
    assert not out.ok and "RuntimeError: disk on fire" in (out.error or "")


def test_bad_functions_are_rejected_with_a_clear_message() -> None:
    def no_hints(x):  # type: ignore[no-untyped-def]
        """Doc."""

    def no_doc(x: int) -> None:
        pass

    with pytest.raises(ToolLoadError, match="needs a type hint"):
        tool(no_hints)
    with pytest.raises(ToolLoadError, match="docstring"):
        tool(no_doc)


def test_policy_references_import_module_functions(monkeypatch: pytest.MonkeyPatch) -> None:
    module = types.ModuleType("fake_tools_mod")

    def plain(city: str) -> str:
        """Weather for a city."""
        return f"sunny in {city}"

    module.plain = plain  # type: ignore[attr-defined]
    module.declared = tool(side_effects=False)(plain)  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "fake_tools_mod", module)
    loaded = load_custom("fake_tools_mod:plain")
    assert isinstance(loaded, FunctionTool) and loaded.side_effects  # undeclared: assumed to have side effects
    assert load_custom("fake_tools_mod:declared").side_effects is False
    with pytest.raises(ToolLoadError, match="no attribute"):
        load_custom("fake_tools_mod:missing")
    with pytest.raises(ToolLoadError, match="cannot import"):
        load_custom("no_such_module_xyz:f")


def test_parse_docstring_sections() -> None:
    summary, args = parse_docstring("Do a thing.\n\nMore words.\n\nArgs:\n    a (int): First.\n    b: Second\n"
                                    "        line.\nReturns:\n    c: not an argument\n")
    assert summary == "Do a thing.\n\nMore words."
    assert args == {"a": "First.", "b": "Second line."}

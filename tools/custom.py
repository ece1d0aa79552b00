"""Custom tools: plain typed Python functions, their argument schema derived by pydantic from the signature.

    @tool(side_effects=True)
    def send_email(to: str, subject: str, body: str = "") -> str:
        \"\"\"Send an email.

        Args:
            to: The recipient's address.
        \"\"\"

The decorator returns a `FunctionTool` that is still callable as the function. Nothing is registered globally: the
application passes its tools to the registry, or the policy names them as `package.module:function`.
"""

from __future__ import annotations

import asyncio
import importlib
import inspect
import re
import typing
from collections.abc import Callable, Mapping
from typing import Any, overload

from pydantic import BaseModel, ConfigDict, Field, create_model
from pydantic_core import to_json

from guards.policy.base import TOOL_NAME_PATTERN
from tools.base import Tool, ToolOutput

_SECTION = re.compile(r"^\s*(Args|Arguments|Parameters|Returns?|Raises|Yields|Examples?|Notes?):\s*$")
_ARG_LINE = re.compile(r"^\s*(\*{0,2}\w+)\s*(\([^)]*\))?\s*:\s*(.*)$")
_NAME = re.compile(TOOL_NAME_PATTERN)  # the policy's tool names


class ToolLoadError(ValueError):
    """A custom tool could not be built or imported; the message names the tool and the problem."""


def parse_docstring(doc: str | None) -> tuple[str, dict[str, str]]:
    """(description, {argument: description}) from a Google-style docstring. Pure."""
    if not doc:
        return "", {}
    lines = inspect.cleandoc(doc).splitlines()
    summary: list[str] = []
    args: dict[str, str] = {}
    section: str | None = None
    current: str | None = None
    for line in lines:
        header = _SECTION.match(line)
        if header:
            section, current = header.group(1).lower(), None
            continue
        if section is None:
            summary.append(line)
        elif section in ("args", "arguments", "parameters"):
            match = _ARG_LINE.match(line)
            if match and (len(line) - len(line.lstrip())) <= 4:
                current = match.group(1).lstrip("*")
                args[current] = match.group(3).strip()
            elif current and line.strip():
                args[current] = f"{args[current]} {line.strip()}".strip()
    return "\n".join(summary).strip(), args


def args_model_for(fn: Callable[..., Any], name: str, arg_docs: Mapping[str, str]) -> type[BaseModel]:
    """A pydantic model of `fn`'s parameters (extra keys forbidden), built from its type hints."""
    try:
        hints = typing.get_type_hints(fn, include_extras=True)
    except Exception as exc:  # unresolvable forward references
        raise ToolLoadError(f"tool {name}: cannot resolve the type hints: {exc}") from None
    fields: dict[str, Any] = {}
    for param in inspect.signature(fn).parameters.values():
        if param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD):
            raise ToolLoadError(f"tool {name}: *{param.name} parameters cannot be described to the model")
        if param.name not in hints:
            raise ToolLoadError(f"tool {name}: parameter `{param.name}` needs a type hint")
        default = ... if param.default is inspect.Parameter.empty else param.default
        description = arg_docs.get(param.name)
        info = Field(default, description=description) if description else Field(default)
        fields[param.name] = (hints[param.name], info)
    model_name = "".join(part.capitalize() for part in re.split(r"[^A-Za-z0-9]+", name)) + "Args"
    return create_model(model_name, __config__=ConfigDict(extra="forbid"), **fields)


def _render_result(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    return to_json(value).decode("utf-8")


class FunctionTool(Tool):
    """A typed Python function as a tool (sync functions run in a worker thread)."""

    def __init__(self, fn: Callable[..., Any], *, name: str | None = None, description: str | None = None,
                 side_effects: bool = False) -> None:
        self.fn = fn
        self.name = name or fn.__name__
        if not _NAME.match(self.name):
            raise ToolLoadError(f"tool name {self.name!r} must be letters, digits, `_`, `.` or `-`")
        summary, arg_docs = parse_docstring(fn.__doc__)
        self.description = description or summary
        if not self.description:
            raise ToolLoadError(f"tool {self.name}: write a docstring (or pass description=) to tell the model "
                                f"what it does")
        self.args_model = args_model_for(fn, self.name, arg_docs)
        self.side_effects = side_effects
        self.__doc__ = fn.__doc__
        self.__wrapped__ = fn

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.fn(*args, **kwargs)

    def __repr__(self) -> str:
        return f"FunctionTool({self.name!r}, side_effects={self.side_effects})"

    async def call(self, arguments: dict[str, Any]) -> ToolOutput:
        try:
            if inspect.iscoroutinefunction(self.fn):
                value = await self.fn(**arguments)
            else:
                value = await asyncio.to_thread(self.fn, **arguments)
            return ToolOutput(ok=True, output=_render_result(value))
        except Exception as exc:  # the tool's own failure goes back to the model, it must not end the turn
            return ToolOutput.failure(f"{self.name} failed: {type(exc).__name__}: {exc}")


@overload
def tool(fn: Callable[..., Any], /) -> FunctionTool: ...
@overload
def tool(*, name: str | None = None, description: str | None = None,
         side_effects: bool = False) -> Callable[[Callable[..., Any]], FunctionTool]: ...


def tool(fn: Callable[..., Any] | None = None, /, *, name: str | None = None, description: str | None = None,
         side_effects: bool = False) -> FunctionTool | Callable[[Callable[..., Any]], FunctionTool]:
    """Make a typed function a tool. `side_effects=True` for tools that send, write, delete or pay."""

    def wrap(function: Callable[..., Any]) -> FunctionTool:
        return FunctionTool(function, name=name, description=description, side_effects=side_effects)

    return wrap(fn) if fn is not None else wrap


def load_custom(ref: str) -> FunctionTool:
    """Import `package.module:function`. A plain (undecorated) function is assumed to have side effects."""
    module_name, sep, attribute = ref.partition(":")
    if not sep or not module_name or not attribute:
        raise ToolLoadError(f"custom tool {ref!r}: write it as package.module:function")
    try:
        module = importlib.import_module(module_name)
    except Exception as exc:
        raise ToolLoadError(f"custom tool {ref!r}: cannot import {module_name}: {type(exc).__name__}: {exc}") from None
    target = getattr(module, attribute, None)
    if target is None:
        raise ToolLoadError(f"custom tool {ref!r}: {module_name} has no attribute {attribute!r}")
    if isinstance(target, FunctionTool):
        return target
    if callable(target):
        return FunctionTool(target, side_effects=True)  # undeclared: assume the worst
    raise ToolLoadError(f"custom tool {ref!r}: {attribute} is not a function")

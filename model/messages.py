"""The dialog data the prompt format encodes and the tool-call parser produces (pure, frozen)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal, get_args

from model.images import ImageData

Role = Literal["system", "user", "assistant", "tool"]
StopReason = Literal["end_of_turn", "end_of_message"]
ToolFormat = Literal["json", "function_tag", "pythonic"]
TOOL_FORMATS: tuple[str, ...] = get_args(ToolFormat)
Span = tuple[int, int]  # [start, end) character offsets

# Llama 3.1's built-in tools. code_interpreter is enabled by `Environment: ipython` alone and never listed.
BUILTIN_TOOLS: tuple[str, ...] = ("brave_search", "wolfram_alpha", "code_interpreter")


@dataclass(frozen=True)
class ToolCall:
    name: str
    arguments: dict[str, Any]
    call_id: str | None = None


@dataclass(frozen=True)
class Message:
    """One dialog message.

    `raw` is exactly the text the model generated for an assistant message (`<|python_tag|>` included, the final stop
    token excluded); when present the prompt re-encodes it verbatim instead of re-rendering `content`/`tool_calls`.
    `special_spans` are the spans of `raw` that the model generated as special ids (see `model.completion`): only
    those are encoded as control tokens. None (a message stored before the marking existed) means none of them: every
    special-token string in `raw` is then encoded as plain text.
    `images` are a user message's attached images, already checked (`model.images.read_image`): the llama4 family
    renders them before the message's text, as Meta's `ChatFormat` renders a content list [image, ..., text]; other
    roles, and the llama3 family, carry none (`PromptFormatError`).
    """

    role: Role
    content: str = ""
    tool_calls: tuple[ToolCall, ...] = ()
    raw: str | None = None
    stop_reason: StopReason | None = None
    tool_name: str | None = None
    special_spans: tuple[Span, ...] | None = None
    images: tuple[ImageData, ...] = ()


@dataclass(frozen=True)
class ToolDefinition:
    """A custom (function) tool; `parameters` is a JSON-schema object."""

    name: str
    description: str
    parameters: dict[str, Any]


@dataclass(frozen=True)
class ToolSpec:
    tools: tuple[ToolDefinition, ...] = ()
    builtin_tools: tuple[str, ...] = ()
    tool_format: ToolFormat = "json"

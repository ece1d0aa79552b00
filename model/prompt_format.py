"""Llama 3.1 prompts from a dialog: `render_dialog` (the prompt string) and `encode_dialog` (its token ids).

Both read one segment list (`model.prompt_segments`), so they always agree. Two dialects:
- `meta`: Meta's documented format (`model.prompt_meta`), token-for-token what llama-models' `ChatFormat` encodes;
- `hf`: the Llama-3.1-8B-Instruct Hugging Face chat template (`model.prompt_hf`).
Control tokens come only from the format itself, and from the spans of an assistant message's `raw` that the model
generated as special ids (`Message.special_spans`); every other piece of content is encoded as plain text.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date
from typing import TYPE_CHECKING, Literal, get_args

from model.messages import BUILTIN_TOOLS, Message, ToolSpec
from model.prompt_hf import hf_segments
from model.prompt_meta import meta_segments
from model.prompt_segments import PromptFormatError, Segment, encode_segments, render_segments
from model.tokenizer import get_tokenizer

if TYPE_CHECKING:
    from model.tokenizer import Llama3Tokenizer

Dialect = Literal["meta", "hf"]
DIALECTS: tuple[str, ...] = get_args(Dialect)

__all__ = ["DIALECTS", "Dialect", "PromptFormatError", "dialog_segments", "encode_dialog", "render_dialog"]


def _check(messages: Sequence[Message], spec: ToolSpec, dialect: str) -> None:
    if dialect not in DIALECTS:
        raise PromptFormatError(f"unknown dialect {dialect!r} (expected one of {', '.join(DIALECTS)})")
    if spec.tool_format not in ("json", "function_tag"):
        raise PromptFormatError(f"unknown tool format {spec.tool_format!r} (expected json or function_tag)")
    for name in spec.builtin_tools:
        if name not in BUILTIN_TOOLS:
            raise PromptFormatError(f"unknown built-in tool {name!r} (expected one of {', '.join(BUILTIN_TOOLS)})")
    for index, message in enumerate(messages):
        if message.role not in ("system", "user", "assistant", "tool"):
            raise PromptFormatError(f"messages[{index}]: unknown role {message.role!r}")
        if message.role != "assistant" and (message.tool_calls or message.raw is not None):
            raise PromptFormatError(f"messages[{index}]: only assistant messages carry tool calls or raw output")
        if message.special_spans and message.raw is None:
            raise PromptFormatError(f"messages[{index}]: special_spans mark spans of raw, but the message has no raw")
        for call in message.tool_calls:
            if not call.name:
                raise PromptFormatError(f"messages[{index}]: a tool call has no name")


def dialog_segments(
    messages: Sequence[Message],
    spec: ToolSpec = ToolSpec(),
    *,
    today: date,
    dialect: Dialect = "meta",
    add_generation_prompt: bool = True,
) -> list[Segment]:
    _check(messages, spec, dialect)
    build = meta_segments if dialect == "meta" else hf_segments
    return build(messages, spec, today=today, add_generation_prompt=add_generation_prompt)


def render_dialog(
    messages: Sequence[Message],
    spec: ToolSpec = ToolSpec(),
    *,
    today: date,
    dialect: Dialect = "meta",
    add_generation_prompt: bool = True,
) -> str:
    """The prompt as text (control tokens written as their strings)."""
    return render_segments(
        dialog_segments(messages, spec, today=today, dialect=dialect, add_generation_prompt=add_generation_prompt)
    )


def encode_dialog(
    messages: Sequence[Message],
    spec: ToolSpec = ToolSpec(),
    *,
    today: date,
    dialect: Dialect = "meta",
    add_generation_prompt: bool = True,
    tokenizer: Llama3Tokenizer | None = None,
) -> list[int]:
    """The prompt as token ids: control tokens by id, all content as plain text (never ids >= 128000)."""
    if tokenizer is None:
        tokenizer = get_tokenizer()
    segments = dialog_segments(
        messages, spec, today=today, dialect=dialect, add_generation_prompt=add_generation_prompt
    )
    # ChatFormat encodes each piece on its own; a Hugging Face tokenizer encodes the text between control tokens whole.
    return encode_segments(segments, tokenizer, merge_text=dialect == "hf")

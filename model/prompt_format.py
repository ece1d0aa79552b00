"""Llama prompts from a dialog: `render_dialog` (the prompt string) and `encode_dialog` (its token ids).

Both read one segment list (`model.prompt_segments`), so they always agree. Family llama3, two dialects:
- `meta`: Meta's documented format (`model.prompt_meta`), token-for-token what llama-models' `ChatFormat` encodes
  (with `tool_format: pythonic`, Llama 3.2/3.3's Python-list tool calling);
- `hf`: the Llama-3.1-8B-Instruct Hugging Face chat template (`model.prompt_hf`).
Family llama4 (`model.prompt_llama4`): Meta's Llama 4 format, `meta` dialect only.
Control tokens come only from the format itself, and from the spans of an assistant message's `raw` that the model
generated as special ids (`Message.special_spans`); every other piece of content is encoded as plain text.
Images (`Message.images`, user messages only) exist in the llama4 family alone; `dialog_images` lists a prompt's
images in the order of their `<|patch|>` tokens, the order a backend takes them in (`GenerationParams.images`).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date
from typing import TYPE_CHECKING, Literal, get_args

from model.images import ImageData
from model.messages import BUILTIN_TOOLS, TOOL_FORMATS, Message, ToolSpec
from model.prompt_hf import hf_segments
from model.prompt_llama4 import llama4_segments
from model.prompt_meta import meta_segments
from model.prompt_segments import PromptFormatError, Segment, encode_segments, render_segments
from model.tokenizer import get_tokenizer
from model.tokenizer_specs import FAMILIES

if TYPE_CHECKING:
    from model.tokenizer import Llama3Tokenizer

Dialect = Literal["meta", "hf"]
DIALECTS: tuple[str, ...] = get_args(Dialect)

__all__ = ["DIALECTS", "Dialect", "PromptFormatError", "dialog_images", "dialog_segments", "encode_dialog",
           "render_dialog"]


def _check(messages: Sequence[Message], spec: ToolSpec, dialect: str, family: str) -> None:
    if dialect not in DIALECTS:
        raise PromptFormatError(f"unknown dialect {dialect!r} (expected one of {', '.join(DIALECTS)})")
    if family not in FAMILIES:
        raise PromptFormatError(f"unknown model family {family!r} (expected one of {', '.join(FAMILIES)})")
    if family == "llama4" and dialect != "meta":
        raise PromptFormatError("the llama4 family is Meta's rendering only: use dialect meta")
    if spec.tool_format not in TOOL_FORMATS:
        raise PromptFormatError(f"unknown tool format {spec.tool_format!r} (expected one of {', '.join(TOOL_FORMATS)})")
    if spec.tool_format == "pythonic" and dialect != "meta":
        raise PromptFormatError("tool_format pythonic is Meta's rendering only: use dialect meta")
    for name in spec.builtin_tools:
        if name not in BUILTIN_TOOLS:
            raise PromptFormatError(f"unknown built-in tool {name!r} (expected one of {', '.join(BUILTIN_TOOLS)})")
    for index, message in enumerate(messages):
        if message.role not in ("system", "user", "assistant", "tool"):
            raise PromptFormatError(f"messages[{index}]: unknown role {message.role!r}")
        if message.role != "assistant" and (message.tool_calls or message.raw is not None):
            raise PromptFormatError(f"messages[{index}]: only assistant messages carry tool calls or raw output")
        if message.images and message.role != "user":
            raise PromptFormatError(f"messages[{index}]: only user messages carry images, not {message.role} messages")
        if message.images and family != "llama4":
            raise PromptFormatError(
                f"messages[{index}]: the {family} family takes no images (its models read text only); images need a "
                "llama4 main model (models.main.family: llama4)"
            )
        if message.special_spans and message.raw is None:
            raise PromptFormatError(f"messages[{index}]: special_spans mark spans of raw, but the message has no raw")
        for call in message.tool_calls:
            if not call.name:
                raise PromptFormatError(f"messages[{index}]: a tool call has no name")


def dialog_images(messages: Sequence[Message]) -> tuple[ImageData, ...]:
    """The images the prompt of `messages` carries, in prompt order (each user message's, before its text)."""
    return tuple(image for message in messages if message.role == "user" for image in message.images)


def dialog_segments(
    messages: Sequence[Message],
    spec: ToolSpec = ToolSpec(),
    *,
    today: date,
    dialect: Dialect = "meta",
    add_generation_prompt: bool = True,
    family: str = "llama3",
) -> list[Segment]:
    _check(messages, spec, dialect, family)
    if family == "llama4":
        return llama4_segments(messages, spec, add_generation_prompt=add_generation_prompt)
    build = meta_segments if dialect == "meta" else hf_segments
    return build(messages, spec, today=today, add_generation_prompt=add_generation_prompt)


def render_dialog(
    messages: Sequence[Message],
    spec: ToolSpec = ToolSpec(),
    *,
    today: date,
    dialect: Dialect = "meta",
    add_generation_prompt: bool = True,
    family: str = "llama3",
) -> str:
    """The prompt as text (control tokens written as their strings)."""
    return render_segments(
        dialog_segments(
            messages, spec, today=today, dialect=dialect, add_generation_prompt=add_generation_prompt, family=family
        )
    )


def encode_dialog(
    messages: Sequence[Message],
    spec: ToolSpec = ToolSpec(),
    *,
    today: date,
    dialect: Dialect = "meta",
    add_generation_prompt: bool = True,
    tokenizer: Llama3Tokenizer | None = None,
    family: str | None = None,
) -> list[int]:
    """The prompt as token ids: control tokens by id, all content as plain text (never a special id). The family is
    the tokenizer's (`family`, when given as well, must agree); with neither, llama3."""
    if tokenizer is None:
        tokenizer = get_tokenizer(family=family or "llama3")
    elif family is not None and family != tokenizer.family:
        raise PromptFormatError(f"a {family} prompt cannot be encoded with the {tokenizer.family} tokenizer")
    segments = dialog_segments(
        messages,
        spec,
        today=today,
        dialect=dialect,
        add_generation_prompt=add_generation_prompt,
        family=tokenizer.family,
    )
    # ChatFormat encodes each piece on its own; a Hugging Face tokenizer encodes the text between control tokens whole.
    return encode_segments(segments, tokenizer, merge_text=dialect == "hf")

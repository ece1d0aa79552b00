"""Llama 4 prompts (text): what llama-stack's `augment_messages_for_tools_llama` with its Llama 4
`PythonListCustomToolGenerator`, then llama-models' `llama_models.llama4.chat_format.ChatFormat`, encode.

    <|begin_of_text|>[<|header_start|>system<|header_end|>\\n\\n SYSTEM <|eot|>]
    <|header_start|>user<|header_end|>\\n\\n [IMAGE ...] TEXT <|eot|>
    <|header_start|>assistant<|header_end|>\\n\\n TEXT [f(a=1)] <|eom|>     (a message with calls ends in <|eom|>)
    <|header_start|>ipython<|header_end|>\\n\\n RESULT <|eom|>            (a tool result always ends in <|eom|>)
    <|header_start|>assistant<|header_end|>\\n\\n

The system message is the Python-list one (`model.tool_prompts_pythonic`, Llama 4 variant; no date block): custom
tools are offered only in that format, as in Meta's reference. A call in history is written as Meta writes it back
(`[name(key=value)]`; built-ins as `name.call(query="...")`; code as it is, with no `<|python_start|>`). An assistant
message the model generated (`raw`) is re-encoded verbatim with the stop token it generated (its `stop_reason`).
A user message's images come before its text, each as `model.image_tiles.image_token_strings` lays it out for the
tile grid of its size (Meta's content list [image, ..., text]); only user messages carry images.
"""

from __future__ import annotations

from collections.abc import Sequence

from model.image_tiles import LLAMA4_VISION, VisionSpec, image_grid, image_token_strings
from model.images import ImageData
from model.messages import Message, ToolSpec
from model.prompt_meta import encode_call
from model.prompt_segments import BOS, ImageSlot, PromptFormatError, Segment, Special, Text, raw_segments
from model.tool_prompts_pythonic import pythonic_system_text

FAMILY = "llama4"
EOT4 = Special("<|eot|>")
EOM4 = Special("<|eom|>")


def header4(role: str) -> list[Segment]:
    return [Special("<|header_start|>"), Text(role), Special("<|header_end|>"), Text("\n\n")]


def check_llama4(spec: ToolSpec) -> None:
    if spec.tools and spec.tool_format != "pythonic":
        raise PromptFormatError(
            f"the llama4 family offers custom tools in the pythonic format only (Meta's reference), "
            f"not {spec.tool_format!r}: set agent.tool_format to pythonic"
        )


def assistant_segments4(message: Message) -> list[Segment]:
    segments = header4("assistant")
    if message.raw is not None:
        segments += raw_segments(message.raw, message.special_spans, FAMILY)
        segments.append(EOM4 if message.stop_reason == "end_of_message" else EOT4)
        return segments
    segments.append(Text(message.content))
    segments += [Text(encode_call(call, "pythonic")) for call in message.tool_calls]
    segments.append(EOM4 if message.stop_reason == "end_of_message" or message.tool_calls else EOT4)
    return segments


def image_slot(image: ImageData, vision: VisionSpec = LLAMA4_VISION) -> ImageSlot:
    """An image's place in the prompt: its tokens follow from its size alone (the grid of its tiles)."""
    grid = image_grid(image.width, image.height, vision)
    return ImageSlot(image, tuple(image_token_strings(grid, vision)))


def llama4_segments(
    messages: Sequence[Message], spec: ToolSpec, *, add_generation_prompt: bool
) -> list[Segment]:
    check_llama4(spec)
    rest = list(messages)
    system_message = rest.pop(0).content if rest and rest[0].role == "system" else None
    segments: list[Segment] = [BOS]
    system = pythonic_system_text(spec.tools, spec.builtin_tools, system_message, FAMILY)
    if system is not None:
        segments += [*header4("system"), Text(system), EOT4]
    for message in rest:
        if message.role == "assistant":
            segments += assistant_segments4(message)
        elif message.role == "tool":
            segments += [*header4("ipython"), Text(message.content), EOM4]
        else:
            images = [image_slot(image) for image in message.images]
            segments += [*header4(message.role), *images, Text(message.content), EOT4]
    if add_generation_prompt:
        segments += header4("assistant")
    return segments

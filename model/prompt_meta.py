"""The `meta` dialect: Meta's documented Llama 3.1 format (llama_models/llama3_1/prompt_format.md), and with
`tool_format: pythonic` Llama 3.2/3.3's Python-list tool calling (`model.tool_prompts_pythonic`).

It is what llama-stack's `augment_messages_for_tools_llama_3_1` followed by llama-models' `ChatFormat` produce, with one
correction where llama-stack and the documentation disagree: a blank line separates `Today Date: ...` from the
deployer's system message (llama-stack's Jinja drops the template's final newline). System message:

    [builtin-tools block + "\\n" when any tool] + "Cutting Knowledge Date: December 2023\\nToday Date: <%d %B %Y>\\n"
    + ["\\n" + the deployer's system message]

Custom tools go in a user message right after the system message. Every message content is kept verbatim.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import date

from model.messages import Message, ToolCall, ToolSpec
from model.prompt_segments import (
    BOS,
    EOM,
    EOT,
    PYTHON,
    PromptFormatError,
    Segment,
    Text,
    header,
    raw_segments,
)
from model.tool_prompts import builtin_tools_block, custom_tools_prompt, long_date
from model.tool_prompts_pythonic import encode_pythonic_call, pythonic_system_text

_QUERY_TOOLS = ("brave_search", "wolfram_alpha", "photogen")


def system_text(spec: ToolSpec, today: date, system_message: str | None) -> str:
    text = ""
    block = builtin_tools_block(spec.builtin_tools, bool(spec.tools))
    if spec.tools or spec.builtin_tools:
        text += block + "\n"
    text += f"Cutting Knowledge Date: December 2023\nToday Date: {long_date(today)}\n"
    if system_message is not None:
        text += "\n" + system_message
    return text


def encode_call(call: ToolCall, tool_format: str) -> str:
    """A tool call as `ChatFormat` writes it back (llama-models' `ToolUtils.encode_tool_call`)."""
    if call.name in _QUERY_TOOLS:
        args = ", ".join(f'{key}="{value}"' for key, value in call.arguments.items())
        return f"{call.name}.call({args})"
    if call.name == "code_interpreter":
        code = call.arguments.get("code")
        if not isinstance(code, str):
            raise PromptFormatError("a code_interpreter call needs a string 'code' argument")
        return code
    if tool_format == "function_tag":
        return f"<function={call.name}>{json.dumps(call.arguments)}</function>"
    if tool_format == "pythonic":
        return encode_pythonic_call(call)
    return json.dumps({"type": "function", "name": call.name, "parameters": call.arguments})


def assistant_segments(message: Message, tool_format: str) -> list[Segment]:
    segments = header("assistant")
    if message.raw is not None:
        segments += raw_segments(message.raw, message.special_spans)
    else:
        if message.tool_calls and message.tool_calls[0].name == "code_interpreter":
            segments.append(PYTHON)
        segments.append(Text(message.content))
        segments += [Text(encode_call(call, tool_format)) for call in message.tool_calls]
    segments.append(EOM if message.stop_reason == "end_of_message" else EOT)
    return segments


def meta_segments(
    messages: Sequence[Message], spec: ToolSpec, *, today: date, add_generation_prompt: bool
) -> list[Segment]:
    rest = list(messages)
    system_message = rest.pop(0).content if rest and rest[0].role == "system" else None
    segments: list[Segment] = [BOS]
    if spec.tool_format == "pythonic":  # Llama 3.2/3.3: tools in the system message, no date block
        pythonic = pythonic_system_text(spec.tools, spec.builtin_tools, system_message, "llama3")
        if pythonic is not None:
            segments += [*header("system"), Text(pythonic), EOT]
    else:
        segments += [*header("system"), Text(system_text(spec, today, system_message)), EOT]
    if spec.tools and spec.tool_format != "pythonic":
        segments += [*header("user"), Text(custom_tools_prompt(spec.tools, spec.tool_format)), EOT]
    for message in rest:
        if message.role == "assistant":
            segments += assistant_segments(message, spec.tool_format)
        else:
            role = "ipython" if message.role == "tool" else message.role
            segments += [*header(role), Text(message.content), EOT]
    if add_generation_prompt:
        segments += header("assistant")
    return segments

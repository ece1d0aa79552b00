"""The `hf` dialect: what the Llama-3.1-8B-Instruct Hugging Face chat template renders.

Differences from `meta` that come from that template: custom tools go into the first user message (as OpenAI-style
JSON, indent 4), `Today Date` is `%d %b %Y`, message contents are trimmed, a tool result is written as a JSON string
(the template's `is iterable` test is true for strings), an assistant tool call is written as
`{"name": ..., "parameters": ...}` (content dropped, one call only) and ends with `<|eom_id|>` exactly when built-in
tools are enabled. An assistant message with `raw` is re-encoded verbatim, ending as its `stop_reason` says. Unlike the
template rendered through a Hugging Face tokenizer, control-token strings inside contents stay plain text when encoded.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import date
from typing import Any

from model.messages import Message, ToolCall, ToolDefinition, ToolSpec
from model.prompt_segments import BOS, EOM, EOT, PYTHON, PromptFormatError, Segment, Text, header, raw_segments
from model.tool_prompts import short_date

_TOOLS_PREAMBLE = (
    "Given the following functions, please respond with a JSON for a function call "
    "with its proper arguments that best answers the given prompt.\n\n"
    'Respond in the format {"name": function name, "parameters": dictionary of argument name and its value}.'
    "Do not use variables.\n\n"
)


def openai_tool(tool: ToolDefinition) -> dict[str, Any]:
    return {
        "type": "function",
        "function": {"name": tool.name, "description": tool.description, "parameters": tool.parameters},
    }


def _tojson(value: Any, indent: int | None = None) -> str:
    # transformers' own `tojson` filter: key order kept, no ASCII or HTML escaping.
    return json.dumps(value, ensure_ascii=False, indent=indent)


def system_text(spec: ToolSpec, today: date, system_message: str) -> str:
    text = ""
    if spec.builtin_tools or spec.tools:
        text += "Environment: ipython\n"
    if spec.builtin_tools:
        text += "Tools: " + ", ".join(name for name in spec.builtin_tools if name != "code_interpreter") + "\n\n"
    return text + f"Cutting Knowledge Date: December 2023\nToday Date: {short_date(today)}\n\n" + system_message


def _call_segments(call: ToolCall, spec: ToolSpec) -> list[Segment]:
    if call.name in spec.builtin_tools:
        args = ", ".join(
            f'{name}="{value if isinstance(value, str) else _tojson(value)}"' for name, value in call.arguments.items()
        )
        return [PYTHON, Text(f"{call.name}.call({args})")]
    return [Text(f'{{"name": "{call.name}", "parameters": {_tojson(call.arguments)}}}')]


def _assistant_segments(message: Message, spec: ToolSpec) -> list[Segment]:
    segments = header("assistant")
    if message.raw is not None:
        segments += raw_segments(message.raw, message.special_spans)
        segments.append(EOM if message.stop_reason == "end_of_message" else EOT)
        return segments
    if not message.tool_calls:
        return [*segments, Text(message.content.strip()), EOT]
    if len(message.tool_calls) != 1:
        raise PromptFormatError("the hf dialect (Llama 3.1 chat template) allows one tool call per assistant message")
    segments += _call_segments(message.tool_calls[0], spec)
    # The template's rule, whatever the recorded stop reason (only `raw` replays what the model really emitted).
    segments.append(EOM if spec.builtin_tools else EOT)
    return segments


def hf_segments(
    messages: Sequence[Message], spec: ToolSpec, *, today: date, add_generation_prompt: bool
) -> list[Segment]:
    rest = list(messages)
    system_message = rest.pop(0).content.strip() if rest and rest[0].role == "system" else ""
    segments: list[Segment] = [BOS, *header("system"), Text(system_text(spec, today, system_message)), EOT]
    if spec.tools:
        if not rest or rest[0].role != "user":
            raise PromptFormatError("the hf dialect puts the tools in the first user message, but there is none")
        first = rest.pop(0)
        tools_text = "".join(_tojson(openai_tool(tool), indent=4) + "\n\n" for tool in spec.tools)
        segments += [*header("user"), Text(_TOOLS_PREAMBLE + tools_text + first.content.strip()), EOT]
    for message in rest:
        if message.role == "assistant":
            segments += _assistant_segments(message, spec)
        elif message.role == "tool":
            segments += [*header("ipython"), Text(_tojson(message.content)), EOT]
        else:
            segments += [*header(message.role), Text(message.content.strip()), EOT]
    if add_generation_prompt:
        segments += header("assistant")
    return segments

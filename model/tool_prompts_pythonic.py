"""The Python-list ("pythonic") tool format of Llama 3.2/3.3 and Llama 4, as Meta's reference renders it.

Reference: llama-stack's `augment_messages_for_tools_llama` with its `PythonListCustomToolGenerator` (llama3 and llama4
variants, llama_stack/models/llama/*/prompt_templates/system_prompts.py), then llama-models' `ChatFormat`, whose
`ToolUtils.encode_tool_call` writes each call back as `[name(key=value, ...)]`. Reproduced character for character,
quirks included: names, descriptions and defaults are pasted into the JSON unescaped, parameter types are the
JSON-schema types as written, `required` goes through plain Jinja's `tojson`, a default is shown only when truthy, and
a call's string values are written in double quotes without escaping (several calls in one message are several
one-call lists, one after the other). There is no date block in this format.

One documented deviation from llama-stack: with no tools, no built-ins and no system message there is no system turn
at all (llama-stack sends an empty one; Meta's prompt-format documents and `ChatFormat` have none).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from model.messages import ToolCall, ToolDefinition
from model.tool_prompts import builtin_tools_block, jinja_tojson

_LLAMA3_PROMPT = """You are a helpful assistant. You have access to functions, but you should only use them if \
they are required.
You are an expert in composing functions. You are given a question and a set of possible functions.
Based on the question, you may or may not need to make one function/tool call to achieve the purpose.

If you decide to invoke any of the function(s), you MUST put it in the format of \
[func_name1(params_name1=params_value1, params_name2=params_value2...), func_name2(params)]
If you decide to invoke a function, you SHOULD NOT include any other text in the response. besides the function \
call in the above format.
For a boolean parameter, be sure to use `True` or `False` (capitalized) for the value.


"""

_LLAMA4_PROMPT = """You are a helpful assistant and an expert in function composition. You can answer general \
questions using your internal knowledge OR invoke functions when necessary. Follow these strict guidelines:

1. FUNCTION CALLS:
- ONLY use functions that are EXPLICITLY listed in the function list below
- If NO functions are listed (empty function list []), respond ONLY with internal knowledge or "I don't have access to \
[Unavailable service] information"
- If a function is not in the list, respond ONLY with internal knowledge or "I don't have access to [Unavailable \
service] information"
- If ALL required parameters are present AND the query EXACTLY matches a listed function's purpose: output ONLY the \
function call(s)
- Use exact format: [func_name1(param1=value1, param2=value2), func_name2(...)]
Examples:
CORRECT: [get_weather(location="Vancouver"), calculate_route(start="Boston", end="New York")] <- Only if get_weather \
and calculate_route are in function list
INCORRECT: get_weather(location="New York")
INCORRECT: Let me check the weather: [get_weather(location="New York")]
INCORRECT: [get_events(location="Singapore")] <- If function not in list

2. RESPONSE RULES:
- For pure function requests matching a listed function: ONLY output the function call(s)
- For knowledge questions: ONLY output text
- For missing parameters: ONLY request the specific missing parameters
- For unavailable services (not in function list): output ONLY with internal knowledge or "I don't have access to \
[Unavailable service] information". Do NOT execute a function call.
- If the query asks for information beyond what a listed function provides: output ONLY with internal knowledge about \
your limitations
- NEVER combine text and function calls in the same response
- NEVER suggest alternative functions when the requested service is unavailable
- NEVER create or invent new functions not listed below

3. STRICT BOUNDARIES:
- ONLY use functions from the list below - no exceptions
- NEVER use a function as an alternative to unavailable information
- NEVER call functions not present in the function list
- NEVER add explanatory text to function calls
- NEVER respond with empty brackets
- Use proper Python/JSON syntax for function calls
- Check the function list carefully before responding

4. TOOL RESPONSE HANDLING:
- When receiving tool responses: provide concise, natural language responses
- Don't repeat tool response verbatim
- Don't add supplementary information

"""

_LLAMA3_HEAD = "Here is a list of functions in JSON format that you can invoke.\n\n"
_LLAMA3_TAIL = (
    "\n\nYou can answer general questions or invoke tools when necessary.\n"
    "In addition to tool calls, you should also augment your responses by using the tool outputs."
)
_LLAMA4_HEAD = "Here is a list of functions in JSON format that you can invoke:\n"


@dataclass(frozen=True)
class PythonicParam:
    """One parameter as llama-stack's `ToolParamDefinition` holds it for this format (JSON-schema type kept)."""

    name: str
    param_type: str
    description: str | None
    required: bool
    default: Any = None


def pythonic_params(tool: ToolDefinition) -> list[PythonicParam]:
    """JSON-schema properties to parameters: the type as written (`str()` of it, as llama-stack's OpenAI adapter
    does), the description, whether `required` names it, and its `default`."""
    properties = tool.parameters.get("properties") or {}
    required = set(tool.parameters.get("required") or ())
    params = []
    for name, schema in properties.items():
        schema = schema if isinstance(schema, dict) else {}
        description = schema.get("description")
        params.append(
            PythonicParam(
                name,
                str(schema.get("type")),
                None if description is None else str(description),
                name in required,
                schema.get("default"),
            )
        )
    return params


def _function_entry(tool: ToolDefinition) -> str:
    params = pythonic_params(tool)
    lines = [
        "    {",
        f'        "name": "{tool.name}",',
        f'        "description": "{tool.description}",',
        '        "parameters": {',
        '            "type": "dict",',
        f'            "required": {jinja_tojson([p.name for p in params if p.required])},',
        '            "properties": {',
    ]
    for index, param in enumerate(params):
        lines += [
            f'                "{param.name}": {{',
            f'                    "type": "{param.param_type}",',
            f'                    "description": "{param.description}"' + ("," if param.default else ""),
        ]
        if param.default:  # Jinja's `{% if param.default %}`: a falsy default (0, False, "") is not shown
            lines.append(f'                    "default": "{param.default}"')
        lines.append("                }" + ("," if index < len(params) - 1 else ""))
    lines += ["            }", "        }", "    }"]
    return "\n".join(lines)


def function_list(tools: Sequence[ToolDefinition]) -> str:
    return "[\n" + ",\n".join(_function_entry(tool) for tool in tools) + "\n]"


def pythonic_tools_prompt(tools: Sequence[ToolDefinition], family: str) -> str:
    """The generator's default system prompt with the function list (llama3: Llama 3.2/3.3; llama4: Llama 4)."""
    if family == "llama4":
        return _LLAMA4_PROMPT + _LLAMA4_HEAD + function_list(tools)
    return _LLAMA3_PROMPT + _LLAMA3_HEAD + function_list(tools) + _LLAMA3_TAIL


def pythonic_system_text(
    tools: Sequence[ToolDefinition], builtin_tools: Sequence[str], system_message: str | None, family: str
) -> str | None:
    """The system message as `augment_messages_for_tools_llama` builds it (system-message behaviour `append`); None
    when there is nothing to say (no tools, no built-ins, no system message)."""
    text = ""
    if builtin_tools:
        text += builtin_tools_block(builtin_tools, False) + "\n"
    if tools:
        text += pythonic_tools_prompt(tools, family) + "\n"
    if system_message is not None:
        text += system_message
    elif not text:
        return None
    return text.strip("\n")


def _value(value: Any) -> str:
    """`ToolUtils.encode_tool_call`'s `format_value`: strings in double quotes as they are, dicts as `{k=v}`."""
    if isinstance(value, str):
        return f'"{value}"'
    if isinstance(value, int | float | bool) or value is None:
        return str(value)
    if isinstance(value, list):
        return f"[{', '.join(_value(item) for item in value)}]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{key}={_value(item)}" for key, item in value.items()) + "}"
    raise ValueError(f"a tool call argument of type {type(value).__name__} cannot be written as a Python value")


def encode_pythonic_call(call: ToolCall) -> str:
    """One call as a one-element Python list, as Meta's `ChatFormat` writes it back."""
    arguments = ", ".join(f"{key}={_value(value)}" for key, value in call.arguments.items())
    return f"[{call.name}({arguments})]"

"""Tool instructions in Meta's Llama 3.1 format (the `meta` dialect), as llama-stack's prompt generators render them.

Custom tools are JSON-schema function definitions; llama-stack describes each parameter as
`{param_type, description, required, default}`, so we convert first (`ParamInfo`). The text of the two custom-tool
formats (`JsonCustomToolGenerator`, `FunctionTagCustomToolGenerator`) is reproduced character for character, quirks
included: names and descriptions are pasted into the JSON unescaped, every property is typed "object" in the json
format, and the function-tag format goes through plain Jinja's `tojson` (sorted keys, ASCII and HTML escapes).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date
from typing import Any

from model.messages import ToolDefinition, ToolFormat

_PARAM_TYPES = {
    "string": "str",
    "integer": "int",
    "number": "float",
    "boolean": "bool",
    "array": "list",
    "object": "dict",
}
_MONTHS = (
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
)


def long_date(day: date) -> str:
    """`%d %B %Y` without depending on the process locale."""
    return f"{day.day:02d} {_MONTHS[day.month - 1]} {day.year}"


def short_date(day: date) -> str:
    """`%d %b %Y` without depending on the process locale."""
    return f"{day.day:02d} {_MONTHS[day.month - 1][:3]} {day.year}"


@dataclass(frozen=True)
class ParamInfo:
    """One parameter as llama-stack's `ToolParamDefinition` holds it."""

    name: str
    param_type: str
    description: str | None
    required: bool


def param_infos(tool: ToolDefinition) -> list[ParamInfo]:
    """JSON-schema properties to llama-stack parameters: types mapped (string->str, ...), others kept as written."""
    properties = tool.parameters.get("properties") or {}
    required = set(tool.parameters.get("required") or ())
    infos = []
    for name, schema in properties.items():
        schema = schema if isinstance(schema, dict) else {}
        raw_type = schema.get("type")
        param_type = _PARAM_TYPES.get(raw_type, str(raw_type)) if isinstance(raw_type, str) else str(raw_type)
        description = schema.get("description")
        infos.append(ParamInfo(name, param_type, None if description is None else str(description), name in required))
    return infos


def builtin_tools_block(builtin_tools: Sequence[str], has_custom_tools: bool) -> str:
    """llama-stack's `BuiltinToolGenerator`: `Environment: ipython` and the `Tools:` line (never code_interpreter)."""
    if not builtin_tools and not has_custom_tools:
        return ""
    listed = [name for name in builtin_tools if name != "code_interpreter"]
    if not listed:
        return "Environment: ipython\n"
    return "Environment: ipython\nTools: " + ", ".join(listed).strip()


def _jinja_str(value: Any) -> str:
    """What `{{ value }}` prints in plain Jinja (None prints as "None", booleans as "True"/"False")."""
    return str(value)


def jinja_tojson(value: Any) -> str:
    """Plain Jinja's `tojson` filter: sorted keys, ASCII escapes, and `< > & '` escaped for HTML."""
    dumped = json.dumps(value, sort_keys=True)
    return dumped.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026").replace("'", "\\u0027")


def json_tools_prompt(tools: Sequence[ToolDefinition]) -> str:
    """llama-stack's `JsonCustomToolGenerator` text."""
    lines = [
        "Answer the user's question by making use of the following functions if needed.",
        "If none of the function can be used, please say so.",
        "Here is a list of functions in JSON format:",
    ]
    for tool in tools:
        params = param_infos(tool)
        lines += [
            "{",
            '    "type": "function",',
            '    "function": {',
            f'        "name": "{tool.name}",',
            f'        "description": "{_jinja_str(tool.description)}",',
            '        "parameters": {',
            '            "type": "object",',
            '            "properties": [',
        ]
        for index, param in enumerate(params):
            lines += [
                "                {",
                f'                    "{param.name}": {{',
                '                        "type": "object",',
                f'                        "description": "{_jinja_str(param.description)}"',
                "                    }",
                "                }" + ("," if index < len(params) - 1 else ""),
            ]
        required = [param.name for param in params if param.required]
        lines += [
            "            ],",
            f'            "required": {jinja_tojson(required)}',
            "        }",
            "    }",
            "}",
        ]
    lines += ["", "Return function calls in JSON format."]
    return "\n".join(lines)


_FUNCTION_TAG_TAIL = """Think very carefully before calling functions.
If you choose to call a function ONLY reply in the following format with no prefix or suffix:

<function=example_function_name>{"example_name": "example_value"}</function>

Reminder:
- If looking for real time information use relevant functions before falling back to brave_search
- Function calls MUST follow the specified format, start with <function= and end with </function>
- Required parameters MUST be specified
- Only call one function at a time
- Put the entire function call reply on one line"""


def function_tag_tools_prompt(tools: Sequence[ToolDefinition]) -> str:
    """llama-stack's `FunctionTagCustomToolGenerator` text."""
    parts = ["You have access to the following functions:\n\n"]
    for tool in tools:
        params = {
            p.name: {"param_type": p.param_type, "description": p.description, "required": p.required}
            for p in param_infos(tool)
        }
        description = _jinja_str(tool.description)
        parts.append(f"Use the function '{tool.name}' to '{description}':\n")
        parts.append(f'{{"name": "{tool.name}", "description": "{description}", "parameters": {jinja_tojson(params)}}}')
        parts.append("\n\n")
    parts.append(_FUNCTION_TAG_TAIL)
    return "".join(parts)


def custom_tools_prompt(tools: Sequence[ToolDefinition], tool_format: ToolFormat) -> str:
    if tool_format == "json":
        return json_tools_prompt(tools)
    if tool_format == "function_tag":
        return function_tag_tools_prompt(tools)
    raise ValueError(f"unknown tool format {tool_format!r} (expected 'json' or 'function_tag')")

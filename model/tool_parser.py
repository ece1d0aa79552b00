"""Parse a Llama 3.1 completion into text and tool calls.

Forms understood (with or without `<|python_tag|>` unless noted):
- built-in calls `brave_search.call(query="...")`, `wolfram_alpha.call(...)`;
- raw code after `<|python_tag|>`: a code_interpreter call `{"code": ...}`, only when code_interpreter is enabled;
- JSON `{"type": "function", "name": ..., "parameters": ...}`, `{"name": ..., "parameters"|"arguments": ...}`, a JSON
  list of those, or several separated by `;`;
- `<function=name>{...}</function>` (the closing tag may be missing);
- a Python-style list `[f(a=1), g(b="x")]`.
The stop reason comes from `<|eom_id|>` / `<|eot_id|>`. Every call is kept (the reference keeps only the first). A
malformed call is reported in `error` / `error_kind` with no calls at all, so nothing half-parsed runs; arguments are
read with `json` and `ast.literal_eval`, never executed.
"""

from __future__ import annotations

import ast
import json
import re
from collections.abc import Collection
from dataclasses import dataclass
from typing import Any, Literal

from model.messages import StopReason, ToolCall

ParseErrorKind = Literal[
    "invalid_json", "invalid_call_syntax", "missing_name", "arguments_not_object", "unknown_tool", "code_not_enabled"
]

PYTHON_TAG = "<|python_tag|>"
_STOPS: dict[str, StopReason] = {
    "<|eot_id|>": "end_of_turn",
    "<|eom_id|>": "end_of_message",
    "<|end_of_text|>": "end_of_turn",
}
_QUERY_TOOLS = frozenset({"brave_search", "wolfram_alpha"})
_CALL_KEYS = frozenset({"type", "name", "parameters", "arguments", "id"})
_BUILTIN_HEAD = re.compile(r"\s*([A-Za-z_]\w*)\.call\(")
_PYTHONIC_HEAD = re.compile(r"\s*\[\s*[A-Za-z_]\w*\s*\(")
_FUNCTION_TAG = re.compile(r"<function=([^>\s]*)>")
_FUNCTION_END = "</function>"
_NAME = re.compile(r"[A-Za-z0-9_.\-]{1,128}")
_CALL_START = re.compile(r"\{\s*\"|\[\s*\{")  # where a call object or a list of them can begin


@dataclass(frozen=True)
class ParsedCompletion:
    content: str | None
    tool_calls: tuple[ToolCall, ...]
    stop_reason: StopReason | None
    error: str | None
    error_kind: ParseErrorKind | None = None


class _CallError(Exception):
    def __init__(self, kind: ParseErrorKind, message: str) -> None:
        super().__init__(message)
        self.kind = kind


def _excerpt(text: str, limit: int = 60) -> str:
    text = text.strip()
    return repr(text if len(text) <= limit else text[:limit] + "...")


def _split_stop(text: str) -> tuple[str, StopReason | None]:
    """Text before the first stop token, and which stop token it was."""
    found = [(text.find(token), token) for token in _STOPS if token in text]
    if not found:
        return text, None
    index, token = min(found)
    return text[:index], _STOPS[token]


def _checked_name(name: Any, known: Collection[str] | None) -> str:
    if not isinstance(name, str) or not name.strip():
        raise _CallError("missing_name", "tool call without a function name")
    if not _NAME.fullmatch(name):
        raise _CallError("invalid_call_syntax", f"invalid tool name {_excerpt(name)}")
    if known is not None and name not in known:
        raise _CallError("unknown_tool", f"unknown tool {name!r}")
    return name


def _checked_arguments(arguments: Any, name: str) -> dict[str, Any]:
    if not isinstance(arguments, dict):
        raise _CallError("arguments_not_object", f"arguments of {name!r} are not a JSON object")
    if not _json_representable(arguments):
        # NaN/Infinity (or a Python literal such as 1e999 or a set) cannot be written back as JSON: every consumer
        # of the call (events, audit log, the tool) would choke on it.
        raise _CallError("invalid_json", f"arguments of {name!r} hold a value JSON cannot represent (NaN, Infinity)")
    return arguments


def _json_representable(value: Any) -> bool:
    """Iterative walk (no recursion limit on deep input): only JSON types and finite numbers."""
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            if not all(isinstance(key, str) for key in item):
                return False
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
        elif isinstance(item, float):
            if item != item or item in (float("inf"), float("-inf")):
                return False
        elif not (item is None or isinstance(item, str | bool | int)):
            return False
    return True


# ---- JSON calls ---------------------------------------------------------------------------------------------------


def _looks_like_call(value: Any) -> bool:
    """Strict test for untagged text: only call-shaped objects count, so JSON in prose is left alone."""
    return (
        isinstance(value, dict)
        and isinstance(value.get("name"), str)
        and set(value) <= _CALL_KEYS
        and ("parameters" in value or "arguments" in value or value.get("type") == "function")
    )


def _json_call(value: Any, known: Collection[str] | None) -> ToolCall:
    if not isinstance(value, dict):
        raise _CallError("invalid_call_syntax", "a JSON tool call must be an object")
    if isinstance(value.get("function"), dict):  # OpenAI nesting: {"type": "function", "function": {...}}
        value = value["function"]
    name = _checked_name(value.get("name"), known)
    arguments = value.get("parameters", value.get("arguments", {}))
    return ToolCall(name, _checked_arguments(arguments, name))


def _json_calls(text: str, known: Collection[str] | None) -> list[ToolCall]:
    """One JSON object, a JSON list of objects, or objects separated by `;` - the whole text must be calls."""
    decoder = json.JSONDecoder()
    values: list[Any] = []
    position = 0
    try:
        while True:
            while position < len(text) and text[position].isspace():
                position += 1
            value, position = decoder.raw_decode(text, position)
            values.extend(value if isinstance(value, list) else [value])
            rest = text[position:].lstrip()
            if not rest:
                break
            if not rest.startswith(";"):
                raise _CallError("invalid_json", f"unexpected text after a JSON tool call: {_excerpt(rest)}")
            position = len(text) - len(rest) + 1
    except (ValueError, RecursionError) as exc:
        raise _CallError("invalid_json", f"malformed JSON tool call {_excerpt(text)}: {exc}") from None
    if not values:
        raise _CallError("invalid_call_syntax", "empty list of tool calls")
    return [_json_call(value, known) for value in values]


def _scan_json_calls(text: str, known: Collection[str] | None) -> tuple[list[ToolCall], str | None]:
    """Call-shaped JSON objects (or lists of them) anywhere in free text, and the text left around them."""
    decoder = json.JSONDecoder()
    calls: list[ToolCall] = []
    spans: list[tuple[int, int]] = []
    position = 0
    while True:
        starts = [i for i in (text.find("{", position), text.find("[", position)) if i >= 0]
        if not starts:
            break
        start = min(starts)
        if not _CALL_START.match(text, start):
            position = start + 1
            continue
        try:
            value, end = decoder.raw_decode(text, start)
        except json.JSONDecodeError as exc:
            # Resume where the decoder gave up: keeps the scan linear on deeply nested, unterminated text.
            position = max(start + 1, exc.pos)
            continue
        except ValueError:  # an integer beyond int_max_str_digits
            position = start + 1
            continue
        except RecursionError:  # nested deeper than any real call: the rest is not calls
            break
        items = value if isinstance(value, list) else [value]
        if items and all(_looks_like_call(item) for item in items):
            calls += [_json_call(item, known) for item in items]
            spans.append((start, end))
        position = end
    if not calls:
        return [], None
    pieces, previous = [], 0
    for start, end in spans:
        pieces.append(text[previous:start])
        previous = end
    pieces.append(text[previous:])
    # Separators between parallel calls (`;`, `,`) are not content.
    leftover = " ".join(p.strip(" \t\r\n;,") for p in pieces if p.strip(" \t\r\n;,"))
    return calls, leftover or None


# ---- Python-style calls -------------------------------------------------------------------------------------------


def _plain_value(value: Any, name: str) -> Any:
    if isinstance(value, tuple | list):
        return [_plain_value(item, name) for item in value]
    if isinstance(value, dict):
        if not all(isinstance(key, str) for key in value):
            raise _CallError("invalid_call_syntax", f"argument of {name!r} has a non-string key")
        return {key: _plain_value(item, name) for key, item in value.items()}
    if value is None or isinstance(value, str | int | float | bool):
        return value
    raise _CallError("invalid_call_syntax", f"argument of {name!r} is not a JSON value")


def _keyword_arguments(call: ast.Call, name: str) -> dict[str, Any]:
    if call.args or any(keyword.arg is None for keyword in call.keywords):
        raise _CallError("invalid_call_syntax", f"call to {name!r} must use keyword arguments only")
    arguments = {}
    for keyword in call.keywords:
        try:
            value = ast.literal_eval(keyword.value)
        except (ValueError, TypeError, SyntaxError, RecursionError, MemoryError):
            raise _CallError("invalid_call_syntax", f"argument {keyword.arg!r} of {name!r} is not a literal") from None
        arguments[keyword.arg] = _plain_value(value, name)
    return _checked_arguments(arguments, name)


def _parse_expression(text: str) -> ast.expr | None:
    try:
        return ast.parse(text.strip(), mode="eval").body
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return None


def _pythonic_calls(tree: ast.expr | None, text: str, known: Collection[str] | None) -> list[ToolCall]:
    if not isinstance(tree, ast.List):
        raise _CallError("invalid_call_syntax", f"malformed Python-style tool call list {_excerpt(text)}")
    if not tree.elts:
        raise _CallError("invalid_call_syntax", "empty list of tool calls")
    calls = []
    for element in tree.elts:
        if not isinstance(element, ast.Call) or not isinstance(element.func, ast.Name):
            raise _CallError("invalid_call_syntax", f"not a function call in the tool call list {_excerpt(text)}")
        name = _checked_name(element.func.id, known)
        calls.append(ToolCall(name, _keyword_arguments(element, name)))
    return calls


def _builtin_call(tree: ast.expr | None, text: str, builtin_tools: Collection[str]) -> ToolCall:
    if not (
        isinstance(tree, ast.Call)
        and isinstance(tree.func, ast.Attribute)
        and tree.func.attr == "call"
        and isinstance(tree.func.value, ast.Name)
    ):
        raise _CallError("invalid_call_syntax", f"malformed built-in tool call {_excerpt(text)}")
    name = tree.func.value.id
    if name not in _QUERY_TOOLS and name not in builtin_tools:
        raise _CallError("unknown_tool", f"unknown built-in tool {name!r}")
    return ToolCall(name, _keyword_arguments(tree, name))


def _is_builtin_tree(tree: ast.expr | None) -> bool:
    return isinstance(tree, ast.Call) and isinstance(tree.func, ast.Attribute) and tree.func.attr == "call"


# ---- <function=...> calls -----------------------------------------------------------------------------------------


def _function_tag_calls(text: str, known: Collection[str] | None) -> tuple[list[ToolCall], str | None]:
    decoder = json.JSONDecoder()
    calls: list[ToolCall] = []
    leftover: list[str] = []
    position = 0
    for match in _FUNCTION_TAG.finditer(text):
        if match.start() < position:
            continue
        leftover.append(text[position : match.start()])
        name = _checked_name(match.group(1), known)
        body_start = match.end()
        while body_start < len(text) and text[body_start].isspace():
            body_start += 1
        try:
            arguments, end = decoder.raw_decode(text, body_start)
        except (ValueError, RecursionError):
            raise _CallError("invalid_json", f"malformed JSON arguments for {name!r}") from None
        calls.append(ToolCall(name, _checked_arguments(arguments, name)))
        rest = text[end:]
        position = end + (
            len(rest) - len(rest.lstrip()) + len(_FUNCTION_END) if rest.lstrip().startswith(_FUNCTION_END) else 0
        )
    if not calls:
        raise _CallError("invalid_call_syntax", f"malformed <function=...> tool call {_excerpt(text)}")
    leftover.append(text[position:])
    content = " ".join(piece.strip() for piece in leftover if piece.strip())
    return calls, content or None


# ---- the two entry paths ------------------------------------------------------------------------------------------


def _tagged_calls(payload: str, builtin_tools: Collection[str], known: Collection[str] | None) -> list[ToolCall]:
    """What follows `<|python_tag|>`: a tool call for sure, or code for the code interpreter."""
    text = payload.strip()
    if not text:
        raise _CallError("invalid_call_syntax", "nothing follows <|python_tag|>")
    if text.startswith("{") or re.match(r"\[\s*\{", text):
        return _json_calls(text, known)
    tree = _parse_expression(text)
    head = _BUILTIN_HEAD.match(text)
    if _is_builtin_tree(tree) or (head and (head.group(1) in _QUERY_TOOLS or head.group(1) in builtin_tools)):
        return [_builtin_call(tree, text, builtin_tools)]
    if _PYTHONIC_HEAD.match(text) and (tree is None or isinstance(tree, ast.List)):
        return _pythonic_calls(tree, text, known)
    if "<function=" in text:
        return _function_tag_calls(text, known)[0]
    if "code_interpreter" in builtin_tools:
        return [ToolCall("code_interpreter", {"code": payload})]
    raise _CallError("code_not_enabled", "code after <|python_tag|> but the code_interpreter tool is not enabled")


def _untagged(body: str, builtin_tools: Collection[str], known: Collection[str] | None) -> ParsedCompletion:
    text = body.strip()
    stop = None  # filled in by the caller
    if "<function=" in text:
        calls, content = _function_tag_calls(text, known)
        return ParsedCompletion(content, tuple(calls), stop, None)
    if _PYTHONIC_HEAD.match(text):
        return ParsedCompletion(None, tuple(_pythonic_calls(_parse_expression(text), text, known)), stop, None)
    head = _BUILTIN_HEAD.match(text)
    if head and (head.group(1) in _QUERY_TOOLS or head.group(1) in builtin_tools):
        return ParsedCompletion(None, (_builtin_call(_parse_expression(text), text, builtin_tools),), stop, None)
    calls, content = _scan_json_calls(text, known)
    if calls:
        return ParsedCompletion(content, tuple(calls), stop, None)
    if (text.startswith("{") or re.match(r"\[\s*\{", text)) and '"name"' in text:
        _json_calls(text, known)  # raises the precise error for a broken JSON call
    return ParsedCompletion(body, (), stop, None)


def parse_completion(
    text: str, *, builtin_tools: Collection[str] = (), tools: Collection[str] | None = None
) -> ParsedCompletion:
    """Split a raw completion into content and tool calls.

    `builtin_tools` are the enabled built-in tools (raw code is a call only when code_interpreter is among them);
    `tools`, when given, are the custom tool names: a call to any other name is an `unknown_tool` error.
    """
    body, stop_reason = _split_stop(text)
    known = None if tools is None else {*tools, *builtin_tools, *_QUERY_TOOLS}
    prefix, tagged, payload = body.partition(PYTHON_TAG)
    try:
        if tagged:
            calls = [call for part in payload.split(PYTHON_TAG) for call in _tagged_calls(part, builtin_tools, known)]
            return ParsedCompletion(prefix.strip() or None, tuple(calls), stop_reason, None)
        parsed = _untagged(body, builtin_tools, known)
        return ParsedCompletion(parsed.content, parsed.tool_calls, stop_reason, None)
    except _CallError as exc:
        content = (prefix.strip() or None) if tagged else body
        return ParsedCompletion(content, (), stop_reason, str(exc), exc.kind)

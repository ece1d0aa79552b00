"""Parse a Llama 3.1 completion into text and tool calls.

Meta's rule (llama-models `ChatFormat.decode_assistant_message`): a tool call is the whole message, surrounding
whitespace aside; prose that contains a call-shaped JSON object (or any other call form) is an answer. Forms:
- after a `<|python_tag|>` the model generated as its special id: built-in calls `brave_search.call(query="...")`,
  JSON calls, `<function=...>` calls, a Python-style call list, else raw code (a code_interpreter call, only when
  code_interpreter is enabled). Text before the tag is content;
- without the tag, the whole message must be one of: a JSON call `{"type": "function", "name": ...,
  "parameters": ...}` / `{"name": ..., "parameters"|"arguments": ...}`, a JSON list of those, or several separated
  by `;`; `<function=name>{...}</function>` calls (the message starts with `<function=`; the last closing tag may be
  missing); a Python-style list `[f(a=1), g(b="x")]`; a built-in `name.call(...)`.
Only the spans the caller marks as real special tokens (`special_spans`, see `model.completion`) count as
`<|python_tag|>` or stop tokens: the same strings spelled in ordinary tokens are plain text. The stop reason comes
from the first real `<|eom_id|>` / `<|eot_id|>` / `<|end_of_text|>`; nothing after it is read. Llama 4 completions
read the same way with its tokens: `<|python_start|>` is the tag (a real `<|python_end|>` after it is dropped, as Meta
does) and `<|eom|>` / `<|eot|>` the stops. Every call is kept (the
reference keeps only the first). A malformed call is reported in `error` / `error_kind` with no calls at all, so
nothing half-parsed runs; arguments are read with `json` and `ast.literal_eval`, never executed.
"""

from __future__ import annotations

import ast
import json
import re
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from model.messages import Span, StopReason, ToolCall

ParseErrorKind = Literal[
    "invalid_json", "invalid_call_syntax", "missing_name", "arguments_not_object", "unknown_tool", "code_not_enabled",
    "code_not_tagged",
]

PYTHON_TAG = "<|python_tag|>"
CODE_INTERPRETER = "code_interpreter"
# Llama 4 opens a call or code with `<|python_start|>` and may close it with `<|python_end|>` (Meta drops the latter).
PYTHON_TAGS = frozenset({PYTHON_TAG, "<|python_start|>"})
PYTHON_END = "<|python_end|>"
_STOPS: dict[str, StopReason] = {
    "<|eot_id|>": "end_of_turn",
    "<|eom_id|>": "end_of_message",
    "<|end_of_text|>": "end_of_turn",
    "<|eot|>": "end_of_turn",
    "<|eom|>": "end_of_message",
}
_JSON_HEAD = re.compile(r"\{|\[\s*\{")  # a JSON call object, or a list of them
_QUERY_TOOLS = frozenset({"brave_search", "wolfram_alpha"})
_CALL_KEYS = frozenset({"type", "name", "parameters", "arguments", "id"})
_BUILTIN_HEAD = re.compile(r"\s*([A-Za-z_]\w*)\.call\(")
_PYTHONIC_HEAD = re.compile(r"\s*\[\s*[A-Za-z_]\w*\s*\(")
_FUNCTION_TAG = re.compile(r"<function=([^>\s]*)>")
_FUNCTION_END = "</function>"
_NAME = re.compile(r"[A-Za-z0-9_.\-]{1,128}")


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
    """Strict test for untagged text: only call-shaped objects count, so a JSON answer is left alone."""
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


def _json_values(text: str) -> list[Any]:
    """One JSON value, a JSON list, or values separated by `;` - the whole text, else an `invalid_json` error."""
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
    return values


def _json_calls(text: str, known: Collection[str] | None) -> list[ToolCall]:
    """After `<|python_tag|>`: the whole text must be JSON calls."""
    return [_json_call(value, known) for value in _json_values(text)]


def _whole_message_json_calls(text: str, known: Collection[str] | None) -> list[ToolCall] | None:
    """Untagged: JSON calls when the whole message is call-shaped JSON; None when it is an answer (JSON that is not a
    call, or a JSON value followed by prose). A call that starts well but is broken JSON is an error."""
    try:
        json.JSONDecoder().raw_decode(text)
    except (ValueError, RecursionError):
        if '"name"' in text:
            return _json_calls(text, known)  # raises the precise error for a broken JSON call
        return None
    try:
        values = _json_values(text)
    except _CallError:
        return None  # JSON followed by prose: an answer (Meta: only a whole-message JSON is a call)
    shaped = [_looks_like_call(value) for value in values]
    if not any(shaped):
        return None
    if not all(shaped):
        raise _CallError("invalid_call_syntax", f"a JSON tool call list holds a non-call {_excerpt(text)}")
    return [_json_call(value, known) for value in values]


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


def _function_tag_calls(text: str, known: Collection[str] | None) -> list[ToolCall]:
    """`<function=name>{...}</function>` calls making up the whole text (whitespace between them; the last closing
    tag may be missing); any other text around them is an error, so nothing half-read runs."""
    decoder = json.JSONDecoder()
    calls: list[ToolCall] = []
    position = 0
    while True:
        while position < len(text) and text[position].isspace():
            position += 1
        if position >= len(text) and calls:
            return calls
        match = _FUNCTION_TAG.match(text, position)
        if match is None:
            if not calls:
                raise _CallError("invalid_call_syntax", f"malformed <function=...> tool call {_excerpt(text)}")
            raise _CallError("invalid_call_syntax", f"unexpected text after a tool call: {_excerpt(text[position:])}")
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
    if text.startswith("<function="):
        return _function_tag_calls(text, known)
    if "code_interpreter" in builtin_tools:
        return [ToolCall("code_interpreter", {"code": payload})]
    raise _CallError("code_not_enabled", "code after <|python_tag|> but the code_interpreter tool is not enabled")


def _untagged(body: str, builtin_tools: Collection[str], known: Collection[str] | None) -> ParsedCompletion:
    """Without a python tag a call is the whole message (whitespace aside); anything else is an answer. Code runs
    only after a real python tag: an untagged call naming code_interpreter is malformed, never a call."""
    parsed = _untagged_calls(body, builtin_tools, known)
    if any(call.name == CODE_INTERPRETER for call in parsed.tool_calls):
        raise _CallError("code_not_tagged", "code_interpreter is called only with <|python_tag|> and the code")
    return parsed


def _untagged_calls(body: str, builtin_tools: Collection[str], known: Collection[str] | None) -> ParsedCompletion:
    text = body.strip()
    if text.startswith("<function="):
        return ParsedCompletion(None, tuple(_function_tag_calls(text, known)), None, None)
    if _PYTHONIC_HEAD.match(text):
        return ParsedCompletion(None, tuple(_pythonic_calls(_parse_expression(text), text, known)), None, None)
    head = _BUILTIN_HEAD.match(text)
    if head and (head.group(1) in _QUERY_TOOLS or head.group(1) in builtin_tools):
        return ParsedCompletion(None, (_builtin_call(_parse_expression(text), text, builtin_tools),), None, None)
    if _JSON_HEAD.match(text):
        calls = _whole_message_json_calls(text, known)
        if calls is not None:
            return ParsedCompletion(None, tuple(calls), None, None)
    return ParsedCompletion(body, (), None, None)


def _real_specials(text: str, special_spans: Sequence[Span]) -> list[tuple[int, int, str]]:
    """The marked spans that really hold a special-token string, in order (a bad span is ignored: plain text)."""
    found = []
    for start, end in sorted(special_spans):
        token = text[start:end]
        if 0 <= start < end <= len(text) and token.startswith("<|") and token.endswith("|>"):
            found.append((start, end, token))
    return found


def _cut(text: str, start: int, end: int, removed: Sequence[Span]) -> str:
    """text[start:end] without the removed spans inside it (the real `<|python_end|>` tokens)."""
    pieces, position = [], start
    for span_start, span_end in removed:
        if start <= span_start and span_end <= end:
            pieces.append(text[position:span_start])
            position = span_end
    pieces.append(text[position:end])
    return "".join(pieces)


def parse_completion(
    text: str,
    *,
    builtin_tools: Collection[str] = (),
    tools: Collection[str] | None = None,
    special_spans: Sequence[Span] = (),
) -> ParsedCompletion:
    """Split a raw completion into content and tool calls.

    `builtin_tools` are the enabled built-in tools (raw code is a call only when code_interpreter is among them);
    `tools`, when given, are the custom tool names: a call to any other name is an `unknown_tool` error.
    `special_spans` are the spans of `text` the model generated as special ids (`Completion.special_spans`); by
    default there are none, and every special-token string in `text` is plain text.
    """
    specials = _real_specials(text, special_spans)
    body, stop_reason = text, None
    for start, _end, token in specials:
        if token in _STOPS:
            body, stop_reason = text[:start], _STOPS[token]
            break
    tags = [(start, end) for start, end, token in specials if token in PYTHON_TAGS and end <= len(body)]
    ends = [(start, end) for start, end, token in specials if token == PYTHON_END and end <= len(body)]
    known = None if tools is None else {*tools, *builtin_tools, *_QUERY_TOOLS}
    prefix = body[: tags[0][0]] if tags else body
    try:
        if tags:
            limits = [start for start, _end in tags[1:]] + [len(body)]
            parts = [
                _cut(body, tag_end, part_end, ends) for (_start, tag_end), part_end in zip(tags, limits, strict=True)
            ]
            calls = [call for part in parts for call in _tagged_calls(part, builtin_tools, known)]
            return ParsedCompletion(prefix.strip() or None, tuple(calls), stop_reason, None)
        parsed = _untagged(body, builtin_tools, known)
        return ParsedCompletion(parsed.content, parsed.tool_calls, stop_reason, None)
    except _CallError as exc:
        content = (prefix.strip() or None) if tags else body
        return ParsedCompletion(content, (), stop_reason, str(exc), exc.kind)

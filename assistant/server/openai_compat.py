"""The OpenAI Chat Completions shapes: parsing a request into the agent's terms, and building responses and chunks.

Pure functions and plain dataclasses; what a request may not contain is a 400 naming the field (`param`).
"""

from __future__ import annotations

import json
import re
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

from assistant.server.errors import ApiError
from assistant.server.sampling import Sampling, parse_sampling
from assistant.server.structured import Structure, parse_structure

ROLES = ("system", "developer", "user", "assistant", "tool")
TOOL_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_-]{0,63}$")


@dataclass(frozen=True)
class ClientCall:
    id: str
    name: str
    arguments: str  # canonical JSON text of `parsed`
    parsed: dict[str, Any]


@dataclass(frozen=True)
class ClientMessage:
    role: str  # system | user | assistant | tool (developer is read as system)
    content: str
    tool_calls: tuple[ClientCall, ...] = ()
    tool_call_id: str | None = None

    def canonical(self) -> str:
        """The form the trust hash covers: everything the model would see of this message."""
        calls = [[c.id, c.name, c.arguments] for c in self.tool_calls]
        return json.dumps([self.role, self.content, calls, self.tool_call_id], ensure_ascii=False, sort_keys=True)


@dataclass(frozen=True)
class ClientTool:
    name: str
    description: str
    parameters: dict[str, Any]


@dataclass(frozen=True)
class ChatTurn:
    """A parsed request: the history before the new input, and the input (a user text, or tool results)."""

    history: tuple[ClientMessage, ...]  # everything up to (not including) the last user message's text
    user_text: str | None  # the new user message; None when the request ends with tool results
    tool_results: tuple[ClientMessage, ...]  # trailing tool messages (part of `history` for judging)
    tools: tuple[ClientTool, ...]
    stream: bool
    model: str
    include_usage: bool = False
    all_messages: tuple[ClientMessage, ...] = field(default=())
    sampling: Sampling = field(default=Sampling())
    structure: Structure = field(default=Structure())  # response_format / tool_choice, made constraints per server
    # the request ends with an assistant message whose text the model continues (the last message of `history`)
    continuation: str | None = None


def _bad(message: str, param: str, code: str = "invalid_request") -> ApiError:
    return ApiError(400, message, code, param=param)


def canonical_arguments(value: Any, param: str) -> tuple[str, dict[str, Any]]:
    if isinstance(value, str):
        try:
            parsed = json.loads(value) if value.strip() else {}
        except json.JSONDecodeError as exc:
            raise _bad(f"tool call arguments are not valid JSON: {exc.msg}", param) from exc
    else:
        parsed = value
    if not isinstance(parsed, dict):
        raise _bad("tool call arguments must be a JSON object", param)
    return json.dumps(parsed, ensure_ascii=False, sort_keys=True), parsed


def text_of(content: Any, param: str) -> str:
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts = []
        for i, part in enumerate(content):
            if not isinstance(part, dict) or part.get("type") != "text" or not isinstance(part.get("text"), str):
                raise _bad("only text content parts are supported", f"{param}[{i}]", "unsupported_content")
            parts.append(part["text"])
        return "".join(parts)
    raise _bad("content must be a string or a list of text parts", param)


def parse_message(raw: Any, index: int) -> ClientMessage:
    param = f"messages[{index}]"
    if not isinstance(raw, dict):
        raise _bad("each message must be an object", param)
    role = raw.get("role")
    if role not in ROLES:
        raise _bad(f"role must be one of {', '.join(ROLES)}", f"{param}.role")
    content = text_of(raw.get("content"), f"{param}.content")
    if role == "developer":
        role = "system"
    refusal = raw.get("refusal")
    if role == "assistant" and not content and isinstance(refusal, str):
        content = refusal  # a refusal this server sent (`message.refusal`), sent back as the SDK keeps it
    calls: list[ClientCall] = []
    if role == "assistant" and raw.get("tool_calls"):
        if not isinstance(raw["tool_calls"], list):
            raise _bad("tool_calls must be a list", f"{param}.tool_calls")
        for j, call in enumerate(raw["tool_calls"]):
            where = f"{param}.tool_calls[{j}]"
            function = call.get("function") if isinstance(call, dict) else None
            if not isinstance(function, dict) or not isinstance(function.get("name"), str) or not call.get("id"):
                raise _bad("a tool call needs an id and a function with a name", where)
            arguments, parsed = canonical_arguments(function.get("arguments", "{}"), f"{where}.function.arguments")
            calls.append(ClientCall(str(call["id"]), function["name"], arguments, parsed))
    tool_call_id = None
    if role == "tool":
        tool_call_id = raw.get("tool_call_id")
        if not isinstance(tool_call_id, str) or not tool_call_id:
            raise _bad("a tool message needs its tool_call_id", f"{param}.tool_call_id")
    elif role not in ("assistant", "system") and not content:
        raise _bad("message content is empty", f"{param}.content")
    return ClientMessage(role, content, tuple(calls), tool_call_id)


def parse_tools(raw: Any) -> tuple[ClientTool, ...]:
    if raw is None:
        return ()
    if not isinstance(raw, list):
        raise _bad("tools must be a list", "tools")
    tools: list[ClientTool] = []
    for i, entry in enumerate(raw):
        function = entry.get("function") if isinstance(entry, dict) and entry.get("type") == "function" else None
        if not isinstance(function, dict):
            raise _bad('each tool must be {"type": "function", "function": {...}}', f"tools[{i}]")
        name = function.get("name")
        if not isinstance(name, str) or not TOOL_NAME.match(name):
            raise _bad("a tool name must match ^[A-Za-z_][A-Za-z0-9_-]{0,63}$", f"tools[{i}].function.name")
        description = function.get("description")
        if description is not None and not isinstance(description, str):
            raise _bad(f"a tool description must be a string, not {_json_type(description)}",
                       f"tools[{i}].function.description")
        parameters = function.get("parameters")
        if parameters is None or parameters == {}:
            parameters = {"type": "object", "properties": {}}
        where = f"tools[{i}].function.parameters"
        problem = schema_problem(parameters)
        if problem is not None:
            raise _bad(f"{problem} (tool {name})", where, "invalid_tool_schema")
        tools.append(ClientTool(name, description or "", parameters))
    if len({t.name for t in tools}) != len(tools):
        raise _bad("tool names must be unique", "tools")
    return tuple(tools)


def _json_type(value: Any) -> str:
    names = {dict: "an object", list: "an array", str: "a string", bool: "a boolean", int: "a number",
             float: "a number", type(None): "null"}
    return names.get(type(value), type(value).__name__)


def schema_problem(parameters: Any) -> str | None:
    """Why a client tool's `parameters` cannot describe its arguments, or None. Checked here so that a malformed
    schema is a 400 naming the problem, never an error deep in the prompt builder or the tool rules."""
    if not isinstance(parameters, dict):
        return f"parameters must be a JSON Schema object, not {_json_type(parameters)}"
    kind = parameters.get("type", "object")
    if kind != "object":
        return f'parameters must describe an object ("type": "object"), not {json.dumps(kind)[:60]}'
    properties = parameters.get("properties", {})
    if not isinstance(properties, dict):
        return f"parameters.properties must be an object, not {_json_type(properties)}"
    for prop, schema in properties.items():
        if isinstance(schema, dict):
            kind = schema.get("type")
            if kind is not None and not isinstance(kind, (str, list)):
                return f"the type of property {prop!r} must be a string or a list, not {_json_type(kind)}"
            text = schema.get("description")
            if text is not None and not isinstance(text, str):
                return f"the description of property {prop!r} must be a string, not {_json_type(text)}"
    required = parameters.get("required", [])
    if not isinstance(required, list) or not all(isinstance(r, str) for r in required):
        return "parameters.required must be a list of property names"
    dialect = parameters.get("$schema")
    if dialect is not None and not isinstance(dialect, str):
        return f"parameters.$schema must be a string, not {_json_type(dialect)}"
    from jsonschema import exceptions, validators

    latest = validators.validator_for({})  # no $schema: the newest dialect
    validator = latest if dialect is None else validators.validator_for(parameters, default=None)
    if validator is None:
        return f"parameters.$schema names a JSON Schema dialect this server does not know: {str(dialect)[:100]!r}"
    try:
        validator.check_schema(parameters)
    except exceptions.SchemaError as exc:
        where = "/".join(str(p) for p in exc.absolute_path)
        return f"parameters is not a valid JSON Schema: {exc.message}" + (f" (at {where})" if where else "")
    except RecursionError:
        return "parameters is nested too deeply to check"
    return None


def parse_chat_request(body: Any, *, max_messages: int, default_model: str, max_new_tokens: int = 1024) -> ChatTurn:
    if not isinstance(body, dict):
        raise _bad("the request body must be a JSON object", "body")
    raw_messages = body.get("messages")
    if not isinstance(raw_messages, list) or not raw_messages:
        raise _bad("messages must be a non-empty list", "messages")
    if len(raw_messages) > max_messages:
        raise _bad(f"the request has {len(raw_messages)} messages; the policy allows {max_messages} "
                   "(server.max_messages)", "messages", "too_many_messages")
    if body.get("n") not in (None, 1):
        raise _bad("only n=1 is supported", "n")
    structure = parse_structure(body)
    sampling = parse_sampling(body, max_new_tokens=max_new_tokens)
    parsed = (parse_message(m, i) for i, m in enumerate(raw_messages))
    messages = tuple(m for m in parsed if m.role != "system" or m.content)  # an empty system message says nothing
    if not messages:
        raise _bad("the conversation has no user message", "messages")
    tools = () if body.get("tool_choice") == "none" else parse_tools(body.get("tools"))
    trailing = 0
    while trailing < len(messages) and messages[-1 - trailing].role == "tool":
        trailing += 1
    if trailing:
        before = messages[-1 - trailing] if trailing < len(messages) else None
        if before is None or before.role != "assistant" or not before.tool_calls:
            raise _bad("tool messages must follow an assistant message with tool_calls", "messages")
        ids = {c.id for c in before.tool_calls}
        for m in messages[-trailing:]:
            if m.tool_call_id not in ids:
                raise _bad(f"tool_call_id {m.tool_call_id!r} answers no call of the preceding assistant message",
                           "messages")
        if not any(m.role == "user" for m in messages):
            raise _bad("the conversation has no user message", "messages")
        history, user_text, results = messages, None, messages[-trailing:]
    elif messages[-1].role == "user":
        history, user_text, results = messages[:-1], messages[-1].content, ()
    elif messages[-1].role == "assistant":  # a continuation: judged with the history, then continued
        if messages[-1].tool_calls:
            raise _bad("an assistant message with tool_calls must be followed by their tool results", "messages")
        if not messages[-1].content:
            raise _bad("a trailing assistant message (a continuation) needs the text to continue", "messages")
        if not any(m.role == "user" for m in messages):
            raise _bad("the conversation has no user message", "messages")
        history, user_text, results = messages, None, ()
    else:
        raise _bad("the last message must be a user message or tool results", "messages")
    stream = body.get("stream", False)
    if not isinstance(stream, bool):
        raise _bad("stream must be true or false", "stream")
    options = body.get("stream_options") or {}
    model = default_model  # the one model this server serves, whatever the client named
    return ChatTurn(history, user_text, results, tools, stream, model,
                    include_usage=bool(isinstance(options, dict) and options.get("include_usage")),
                    all_messages=messages, sampling=sampling, structure=structure,
                    continuation=messages[-1].content if messages[-1].role == "assistant" else None)


def agent_messages(history: tuple[ClientMessage, ...]) -> list[dict[str, Any]]:
    """Client history as the agent's state messages (`assistant.agent.state`): tool results carry the tool name."""
    names: dict[str, str] = {}
    out: list[dict[str, Any]] = []
    for m in history:
        if m.role == "assistant" and m.tool_calls:
            calls = [{"name": c.name, "arguments": c.parsed, "call_id": c.id} for c in m.tool_calls]
            names.update((c.id, c.name) for c in m.tool_calls)
            out.append({"role": "assistant", "content": m.content, "tool_calls": calls})
        elif m.role == "tool":
            out.append({"role": "tool", "content": m.content, "tool_name": names.get(m.tool_call_id or "", "tool")})
        else:
            out.append({"role": m.role, "content": m.content})
    return out


# --- responses -------------------------------------------------------------------------------------------------


def completion_id() -> str:
    return "chatcmpl-" + uuid.uuid4().hex[:24]


def openai_tool_calls(calls: list[dict[str, Any]], *, with_index: bool = False) -> list[dict[str, Any]]:
    out = []
    for i, c in enumerate(calls):
        entry: dict[str, Any] = {"id": c["call_id"], "type": "function", "function": {
            "name": c["name"], "arguments": json.dumps(c["arguments"], ensure_ascii=False, sort_keys=True)}}
        if with_index:
            entry["index"] = i
        out.append(entry)
    return out


def completion_body(cid: str, model: str, *, content: str | None, finish: str, guard: dict[str, Any],
                    tool_calls: list[dict[str, Any]] | None = None, refusal: str | None = None,
                    usage: dict[str, int] | None = None) -> dict[str, Any]:
    """A refusal is OpenAI's: `message.refusal` carries its text, `content` is null."""
    message: dict[str, Any] = {"role": "assistant", "content": content, "refusal": refusal}
    if tool_calls:
        message["tool_calls"] = openai_tool_calls(tool_calls)
    return {
        "id": cid, "object": "chat.completion", "created": int(time.time()), "model": model,
        "choices": [{"index": 0, "message": message, "finish_reason": finish, "logprobs": None}],
        "usage": usage, "guard": guard,
    }


def chunk_body(cid: str, model: str, delta: dict[str, Any], finish: str | None = None,
               guard: dict[str, Any] | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {
        "id": cid, "object": "chat.completion.chunk", "created": int(time.time()), "model": model,
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish, "logprobs": None}],
    }
    if guard is not None:
        body["guard"] = guard
    return body

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
from model.images import ImageData, ImageError, ImageLimits, data_url_bytes, read_image

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
    images: tuple[ImageData, ...] = ()  # a user message's `image_url` parts (data: URLs), checked, in order

    def canonical(self) -> str:
        """The form the trust hash covers: everything the model would see of this message."""
        calls = [[c.id, c.name, c.arguments] for c in self.tool_calls]
        body: list[Any] = [self.role, self.content, calls, self.tool_call_id]
        if self.images:
            body.append([image.sha256 for image in self.images])
        return json.dumps(body, ensure_ascii=False, sort_keys=True)


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
    user_images: tuple[ImageData, ...] = ()  # the new user message's images (judged with `user_text`)

    @property
    def has_images(self) -> bool:
        return bool(self.user_images) or any(m.images for m in self.all_messages)


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


def content_of(content: Any, param: str, limits: ImageLimits) -> tuple[str, tuple[ImageData, ...]]:
    """A message's text (its text parts joined) and its images (`image_url` parts with data: URLs, checked against
    `limits`; a remote URL, a malformed or oversized image is a 400 naming the part)."""
    if content is None:
        return "", ()
    if isinstance(content, str):
        return content, ()
    if not isinstance(content, list):
        raise _bad("content must be a string or a list of content parts", param)
    parts: list[str] = []
    images: list[ImageData] = []
    for i, part in enumerate(content):
        where = f"{param}[{i}]"
        kind = part.get("type") if isinstance(part, dict) else None
        if kind == "text" and isinstance(part.get("text"), str):
            parts.append(part["text"])
        elif kind == "image_url":
            images.append(image_part(part.get("image_url"), where, len(images) + 1, limits))
        else:
            raise _bad("content parts must be text or image_url parts", where, "unsupported_content")
    if len(images) > limits.max_count:
        raise _bad(f"{len(images)} images in one message is over the limit of {limits.max_count} "
                   "(images.max_count)", param, "invalid_image")
    return "".join(parts), tuple(images)


def image_part(value: Any, where: str, number: int, limits: ImageLimits) -> ImageData:
    url = value.get("url") if isinstance(value, dict) else None
    if not isinstance(url, str):
        raise _bad("an image_url part needs image_url.url (a data: URL)", f"{where}.image_url.url", "invalid_image")
    name = f"image-{number}"
    try:
        return read_image(data_url_bytes(url, name=name), name=name, limits=limits)
    except ImageError as exc:
        raise _bad(str(exc), f"{where}.image_url.url", "invalid_image") from None


def parse_message(raw: Any, index: int, limits: ImageLimits = ImageLimits()) -> ClientMessage:
    param = f"messages[{index}]"
    if not isinstance(raw, dict):
        raise _bad("each message must be an object", param)
    role = raw.get("role")
    if role not in ROLES:
        raise _bad(f"role must be one of {', '.join(ROLES)}", f"{param}.role")
    content, images = content_of(raw.get("content"), f"{param}.content", limits)
    if images and role != "user":
        raise _bad("images are accepted in user messages only", f"{param}.content", "invalid_image")
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
    return ClientMessage(role, content, tuple(calls), tool_call_id, images)


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


def parse_chat_request(body: Any, *, max_messages: int, default_model: str, max_new_tokens: int = 1024,
                       image_limits: ImageLimits = ImageLimits()) -> ChatTurn:
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
    parsed = (parse_message(m, i, image_limits) for i, m in enumerate(raw_messages))
    messages = tuple(m for m in parsed if m.role != "system" or m.content)  # an empty system message says nothing
    if not messages:
        raise _bad("the conversation has no user message", "messages")
    tools = () if body.get("tool_choice") == "none" else parse_tools(body.get("tools"))
    user_images: tuple[ImageData, ...] = ()
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
        user_images = messages[-1].images
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
    return ChatTurn(history, user_text, results, tools, stream, model, user_images=user_images,
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
            message: dict[str, Any] = {"role": m.role, "content": m.content}
            if m.images:
                message["images"] = [image.to_dict() for image in m.images]
            out.append(message)
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

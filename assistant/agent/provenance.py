"""Provenance: every message the model may read carries the record of what let it in (docs/AGENT.md, "The invariant").

A record is either a judgement (the gate's path, its stages and their outcome, over exactly that message) or the
name of a trusted source: text the deployer wrote (`policy`: refusals, the policy's notices) or the agent composed
from parts already judged (`agent`: a denial, a withheld result, a parse error). `seal` is the only way to make one,
and it takes a passed `Judgement` whose text is the text the model will read; `admit` is the only way from a thread
to model input, and it refuses (a guard error) any message whose record is missing or does not match the message as
it is now. A judgement forgotten on a new path therefore fails closed instead of leaking.

The digest is a plain sha256 of the message's model-visible fields: the ledger guards against code that forgets to
judge, not against someone who can write the thread store (who can write anything). The server's memory of client
history it judged keys this same digest with its own secret (`assistant/server/trust.py`).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
from collections.abc import Sequence
from typing import Any, Final, Literal

from guards.runtime.gate import Judgement

RECORD = "judged"  # the key of a message's record in the thread state
LEDGER: Final = "ledger"  # AgentState key: 1 once every message of the thread carries a record
VERSION = 1
# policy: the deployer's text; agent: composed by the agent from judged parts; shown: an answer as far as the user saw
# it when the turn was stopped (the answer stream releases text only after a check covering it passed)
TRUSTED_SOURCES = ("policy", "agent", "shown")
# The fields the encoder reads (assistant.agent.state.message_from_dict), so the record covers all the model sees.
VISIBLE = ("role", "content", "tool_calls", "raw", "stop_reason", "tool_name", "special_spans", "images")

MessageDict = dict[str, Any]
Source = Literal["policy", "agent", "shown"]


class Unjudged(Exception):
    """A message on its way to the model has no (matching) judgement on record: the turn fails closed."""

    def __init__(self, index: int, message: MessageDict, why: str) -> None:
        super().__init__(f"message {index} of the thread ({message.get('role', '?')}) {why}; it was not sent to the "
                         "model")
        self.index = index


def digest(message: MessageDict) -> str:
    """sha256 over exactly what the model will see of `message` (canonical JSON of its visible fields)."""
    visible = {key: message[key] for key in VISIBLE if message.get(key) not in (None, "", [], ())}
    if "images" in visible:  # an image counts by its digest; reading it back checks its bytes against that digest
        visible["images"] = image_digests(message)
    canonical = json.dumps(visible, ensure_ascii=False, sort_keys=True, separators=(",", ":"), default=list)
    return hashlib.sha256(canonical.encode()).hexdigest()


def judged_text(message: MessageDict) -> str:
    """The text a judgement must have covered: the raw completion where the model's own bytes are kept, else the
    content and each tool call as the model would write it (a user message, a tool result, a client's message)."""
    if message.get("raw"):
        return str(message["raw"])
    calls = [json.dumps({"name": c["name"], "parameters": c.get("arguments") or {}}, ensure_ascii=False)
             for c in message.get("tool_calls") or ()]
    return "\n".join(part for part in (message.get("content") or "", *calls) if part)


def image_digests(message: MessageDict) -> list[str]:
    """The sha256 of each image a message carries (a user's attached images), in order."""
    return [str(image["sha256"]) for image in message.get("images") or ()]


def call_text(call: dict[str, Any]) -> str:
    """A proposed call as the `tool_call` path judges it."""
    return json.dumps({"name": call["name"], "arguments": call.get("arguments") or {}}, ensure_ascii=False)


def seal(message: MessageDict, judgement: Judgement, *calls: Judgement) -> MessageDict:
    """`message` with the record of `judgement`, which must have passed on exactly the text the model will read
    (and, for a message whose calls were judged one by one, those `tool_call` judgements, in order)."""
    for one in (judgement, *calls):
        if not one.passed:
            raise ValueError(f"a {one.outcome} judgement cannot let a message in")
    if judgement.text != judged_text(message):
        raise ValueError(f"the {judgement.path} judgement covers other text than this {message['role']} message")
    if list(judgement.images) != image_digests(message):
        raise ValueError(f"the {judgement.path} judgement covers other images than this {message['role']} message")
    if [one.text for one in calls] != [call_text(c) for c in message.get("tool_calls") or ()][: len(calls)]:
        raise ValueError("the tool_call judgements cover other calls than this message's")
    stages = [result.stage for one in (judgement, *calls) for result in one.results]
    return _with_record(message, {"path": judgement.path, "stages": stages})


def seal_trusted(message: MessageDict, source: Source) -> MessageDict:
    """`message` with a trusted-source record: deployer text (`policy`) or the agent's own composition (`agent`)."""
    if source not in TRUSTED_SOURCES:
        raise ValueError(f"unknown trusted source {source!r}")
    return _with_record(message, {"path": source, "stages": []})


def seal_recognised(message: MessageDict, how: str) -> MessageDict:
    """A client's message the server recognised as one it judged or produced before (trust.py's keyed memory)."""
    return _with_record(message, {"path": "recognised", "stages": [], "how": how})


def _with_record(message: MessageDict, record: dict[str, Any]) -> MessageDict:
    body = {key: value for key, value in message.items() if key != RECORD}
    return {**body, RECORD: {**record, "sha256": digest(body)}}


def record_problem(message: MessageDict) -> str | None:
    """Why `message` may not reach the model, or None when its record matches it."""
    record = message.get(RECORD)
    if not isinstance(record, dict):
        return "has no judgement on record"
    if record.get("sha256") != digest(message):
        return f"does not match its record (the {record.get('path', '?')} judgement was of other text)"
    for image in message.get("images") or ():  # the record names each image by digest: the bytes must still be it
        if not isinstance(image, dict) or image_bytes_digest(image) != image.get("sha256"):
            return "holds an image whose bytes are not the image that was judged"
    return None


def image_bytes_digest(image: dict[str, Any]) -> str | None:
    try:
        return hashlib.sha256(base64.b64decode(str(image.get("data", "")), validate=True)).hexdigest()
    except (binascii.Error, ValueError):
        return None


def admit(messages: Sequence[MessageDict], *, first_index: int = 0, unsealed_tail: int = 0) -> None:
    """Raise Unjudged at the first message without a matching record. `unsealed_tail`: the last messages may be
    unsealed because guards are judging them right now (speculation runs the model ahead; its output is used only
    if they pass)."""
    checked = messages[: len(messages) - unsealed_tail] if unsealed_tail else messages
    for offset, message in enumerate(checked):
        if (problem := record_problem(message)) is not None:
            raise Unjudged(first_index + offset, message, problem)


def unsealed(messages: Sequence[MessageDict]) -> list[int]:
    """Indexes of messages without a matching record (a thread stored before records existed)."""
    return [i for i, message in enumerate(messages) if record_problem(message) is not None]


# --- tool definitions: the model reads them in its system prompt ---------------------------------------------


def definition_text(definition: Any) -> str:
    """A tool definition (model.messages.ToolDefinition) as the `tool_definition` path judges it: all of it."""
    body = {"name": definition.name, "description": definition.description, "parameters": definition.parameters}
    return json.dumps(body, ensure_ascii=False, sort_keys=True)


def definition_digest(definition: Any, source: str) -> str:
    return hashlib.sha256(f"{source}\0{definition_text(definition)}".encode()).hexdigest()


def deployer_definition(definition: Any) -> str:
    """The record of a definition the deployer configured (the policy's tools, MCP servers it names)."""
    return definition_digest(definition, "policy")


def judged_definition(definition: Any, judgement: Judgement) -> str:
    """The record of a definition a client or an MCP server sent, once the `tool_definition` path passed it: on
    exactly the text the model reads, or on that text followed by a line with the rest of the definition (an MCP
    tool's title, annotations and raw input schema: tools.mcp.vetting.definition_text)."""
    seen = definition_text(definition)
    covered = judgement.text == seen or judgement.text.startswith(seen + "\n")
    if not judgement.passed or judgement.path != "tool_definition" or not covered:
        raise ValueError(f"no passed tool_definition judgement of the tool {definition.name!r}")
    return definition_digest(definition, "judged")


def admit_tools(definitions: Sequence[Any], records: Any) -> None:
    """Raise Unjudged for the first definition without a matching record (`records`: name -> record)."""
    for index, definition in enumerate(definitions):
        record = records.get(definition.name)
        if record not in (deployer_definition(definition), definition_digest(definition, "judged")):
            raise Unjudged(index, {"role": f"tool definition {definition.name!r}"}, "has no judgement on record")

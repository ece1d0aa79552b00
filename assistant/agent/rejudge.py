"""Judging messages that arrive without a record: a client's history in `serve`, a thread stored before records
existed. Each takes its role's path (`guards.runtime.gate.ROLE_PATHS`), each tool call it carries the `tool_call`
path; what passes is sealed (`provenance.seal`), the first that does not stops the rest."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from assistant.agent.provenance import MessageDict, call_text, judged_text, record_problem, seal
from guards.runtime.gate import ROLE_PATHS, TOOL_CALL_PATH, Judgement, judge
from model.images import ImageData

CONTEXT_MESSAGES = 4  # earlier user/assistant messages Llama Guard sees as context (as the agent does)


@dataclass
class Rejudged:
    messages: list[MessageDict] = field(default_factory=list)  # every message, sealed, up to the one that stopped
    stopped: Judgement | None = None  # the judgement that did not pass
    stopped_index: int | None = None
    judged: int = 0  # messages judged here (not already sealed)


async def judge_message(
    pipeline: Any, message: MessageDict, *, conversation: Sequence[tuple[str, str]] = (), thread_id: str | None = None,
    on_result: Callable[[Any], None] | None = None,
) -> tuple[MessageDict | None, Judgement]:
    """`message` sealed when its role's path and each of its calls passed; else None and the judgement that did not."""
    common: dict[str, Any] = {"conversation": conversation, "thread_id": thread_id, "on_result": on_result}
    images = tuple(ImageData.from_dict(image) for image in message.get("images") or ())
    judgement = await judge(pipeline, ROLE_PATHS[message["role"]], judged_text(message), images=images, **common)
    if not judgement.passed:
        return None, judgement
    calls = []
    for call in message.get("tool_calls") or ():
        code = (call.get("arguments") or {}).get("code") if call["name"] == "code_interpreter" else None
        one = await judge(pipeline, TOOL_CALL_PATH, call_text(call), code=code if isinstance(code, str) else None,
                          **common)
        if not one.passed:
            return None, one
        calls.append(one)
    return seal(message, judgement, *calls), judgement


def context_after(context: list[tuple[str, str]], message: MessageDict) -> list[tuple[str, str]]:
    if message["role"] in ("user", "assistant") and message.get("content") and not message.get("tool_calls"):
        context = [*context, (message["role"], message["content"])]
    return context[-CONTEXT_MESSAGES:]


async def rejudge(
    pipeline: Any, messages: Sequence[MessageDict], *, thread_id: str | None = None,
    on_result: Callable[[Any], None] | None = None,
) -> Rejudged:
    """Judge every message without a matching record, in order, with the conversation before it as context."""
    out = Rejudged()
    context: list[tuple[str, str]] = []
    for index, message in enumerate(messages):
        if record_problem(message) is not None:
            sealed, judgement = await judge_message(pipeline, message, conversation=tuple(context),
                                                    thread_id=thread_id, on_result=on_result)
            if sealed is None:
                out.stopped, out.stopped_index = judgement, index
                return out
            message = sealed
            out.judged += 1
        out.messages.append(message)
        context = context_after(context, message)
    return out

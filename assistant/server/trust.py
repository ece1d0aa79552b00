"""The trust rule for client history: the API is stateless, so the client sends the whole conversation each time.

A message is trusted only when the server itself produced it or already judged it, recognised by a keyed hash
(HMAC-SHA256 under a per-process secret, over the API key's id and the message's canonical form) that the server
keeps in memory; the client never sees a hash, so it cannot forge one. Every other message is judged at the stage
its role maps to (user and system -> `user_input`, assistant -> `model_output` plus `tool_call` for each call,
tool -> `tool_result`) before the model sees it. A restart forgets the hashes: old history is judged again (safe).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
import threading
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from assistant.events import GuardVerdict
from assistant.server.openai_compat import ClientMessage

STAGE_FOR_ROLE = {"user": "user_input", "system": "user_input", "assistant": "model_output", "tool": "tool_result"}
CONTEXT_MESSAGES = 4  # earlier user/assistant messages Llama Guard sees as context (as the agent does)


class TrustStore:
    """Keyed hashes of the messages this process produced or judged, per API key (bounded, least recently used out)."""

    def __init__(self, secret: bytes | None = None, capacity: int = 200_000) -> None:
        self._secret = secret or secrets.token_bytes(32)
        self._seen: OrderedDict[bytes, None] = OrderedDict()
        self._capacity = capacity
        self._lock = threading.Lock()

    def digest(self, key_id: str, message: ClientMessage) -> bytes:
        return hmac.new(self._secret, f"{key_id}\0{message.canonical()}".encode(), hashlib.sha256).digest()

    def remember(self, key_id: str, message: ClientMessage, *, refused: bool = False) -> None:
        """`refused`: the server judged this message and refused it; it is left out of later prompts."""
        digest = self.digest(key_id, message) + (b"R" if refused else b"")
        with self._lock:
            self._seen[digest] = None
            self._seen.move_to_end(digest)
            while len(self._seen) > self._capacity:
                self._seen.popitem(last=False)

    def known(self, key_id: str, message: ClientMessage, *, refused: bool = False) -> bool:
        digest = self.digest(key_id, message) + (b"R" if refused else b"")
        with self._lock:
            if digest in self._seen:
                self._seen.move_to_end(digest)
                return True
        return False


@dataclass
class Judgement:
    """What judging the client's history found: verdicts, and the first stage that stopped it (if any)."""

    verdicts: list[GuardVerdict] = field(default_factory=list)
    kept: list[ClientMessage] = field(default_factory=list)  # what the model may see (refused exchanges left out)
    blocked_stage: str | None = None
    guard_error: bool = False
    judged: int = 0


def verdict_events(result: Any) -> list[GuardVerdict]:
    return [
        GuardVerdict(stage=v.stage, guard=v.guard, decision=v.decision, score=v.score, categories=tuple(v.categories),
                     reasons=tuple(v.reasons), latency_ms=v.latency_ms, error=v.error)
        for v in result.verdicts
    ]  # fmt: skip


def stops(result: Any) -> bool:
    """As in the agent: `ask` has nobody to ask here, and a guard error blocks (fail closed)."""
    return result.decision in ("block", "ask") or (result.error is not None and result.decision != "allow")


async def judge_history(
    pipeline: Any, trust: TrustStore, key_id: str, history: Sequence[ClientMessage], *, thread_id: str | None
) -> Judgement:
    """Judge every message of `history` the server does not recognise, in order; stop at the first block. A message
    the server itself refused before (the client sent it back) is left out, with the refusal that answered it."""
    out = Judgement()
    context: list[tuple[str, str]] = []
    skip_reply = False
    for message in history:
        if trust.known(key_id, message, refused=True):
            skip_reply = message.role == "user"
            continue
        if skip_reply and message.role == "assistant" and not message.tool_calls and trust.known(key_id, message):
            skip_reply = False
            continue
        skip_reply = False
        if not trust.known(key_id, message):
            checks: list[tuple[str, str, str]] = []
            stage = STAGE_FOR_ROLE[message.role]
            if message.content:
                checks.append((stage, message.content, "assistant" if message.role == "assistant" else "user"))
            for call in message.tool_calls:
                text = json.dumps({"name": call.name, "arguments": call.parsed}, ensure_ascii=False)
                checks.append(("tool_call", text, "assistant"))
            for check_stage, text, role in checks:
                with_context = check_stage in ("user_input", "model_output")
                conversation = tuple(context[-CONTEXT_MESSAGES:]) if with_context else ()
                result = await pipeline.check(check_stage, text, role=role, conversation=conversation,
                                              thread_id=thread_id)  # fmt: skip
                out.verdicts.extend(verdict_events(result))
                if stops(result):
                    if result.error is None:  # a guard error is not a judgement: the message is judged again next time
                        trust.remember(key_id, message, refused=True)
                    out.blocked_stage = check_stage
                    out.guard_error = result.error is not None
                    return out
            out.judged += 1
            trust.remember(key_id, message)
        out.kept.append(message)
        if message.role in ("user", "assistant") and message.content and not message.tool_calls:
            context.append((message.role, message.content))
    return out

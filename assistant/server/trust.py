"""The trust rule for client history: the API is stateless, so the client sends the whole conversation each time.

It is one use of the agent's judgement ledger (`assistant/agent/provenance.py`): every message the model reads must
carry a record, and a client's message has none. So each one is either recognised - the server produced it or judged
it before, for this API key: a keyed hash (HMAC-SHA256 under a per-process secret, over the key's id and the
message's ledger digest) that only the server can make - or judged now on its role's declared path
(`guards.runtime.gate.ROLE_PATHS`, through `assistant.agent.rejudge`: user and system text `user_text`, an assistant
message `completion` then `tool_call` for each call, a tool result the whole `tool_result` path), and sealed. Only
what a guard passed (or the server produced) is remembered; a restart forgets everything, and old history is judged
again.

One exception keeps conversations going after a refusal: a user message the server refused, sent back followed by
the very refusal it got, is left out together with it. Any other refused text sent again is judged again.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import threading
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from assistant.agent.provenance import MessageDict, digest, seal_recognised
from assistant.agent.rejudge import context_after, judge_message
from assistant.events import GuardVerdict, verdict_events
from assistant.server.openai_compat import ClientMessage, agent_messages


class TrustStore:
    """Keyed hashes of the messages this process produced or judged, per API key (bounded, least recently used out)."""

    def __init__(self, secret: bytes | None = None, capacity: int = 200_000) -> None:
        self._secret = secret or secrets.token_bytes(32)
        self._seen: OrderedDict[bytes, None] = OrderedDict()
        self._capacity = capacity
        self._lock = threading.Lock()

    def _key(self, key_id: str, *messages: MessageDict) -> bytes:
        body = "\0".join([key_id, *(digest(m) for m in messages)])
        return hmac.new(self._secret, body.encode(), hashlib.sha256).digest()

    def _add(self, key: bytes) -> None:
        with self._lock:
            self._seen[key] = None
            self._seen.move_to_end(key)
            while len(self._seen) > self._capacity:
                self._seen.popitem(last=False)

    def _has(self, key: bytes) -> bool:
        with self._lock:
            if key in self._seen:
                self._seen.move_to_end(key)
                return True
        return False

    def remember(self, key_id: str, message: MessageDict) -> None:
        """A message a guard passed, or the server produced (an answer, a refusal, client tool calls)."""
        self._add(self._key(key_id, message))

    def known(self, key_id: str, message: MessageDict) -> bool:
        return self._has(self._key(key_id, message))

    def remember_refusal(self, key_id: str, user: MessageDict, reply: MessageDict) -> None:
        """A user message the input guards refused, and the refusal that answered it (left out together)."""
        self._add(b"R" + self._key(key_id, user, reply))

    def refused_exchange(self, key_id: str, user: MessageDict, reply: MessageDict | None) -> bool:
        return reply is not None and self._has(b"R" + self._key(key_id, user, reply))


@dataclass
class HistoryJudgement:
    """What judging the client's history found: verdicts, and the first stage that stopped it (if any)."""

    verdicts: list[GuardVerdict] = field(default_factory=list)
    kept: list[MessageDict] = field(default_factory=list)  # sealed: what the model may see
    blocked_stage: str | None = None
    guard_error: bool = False
    judged: int = 0


async def judge_history(
    pipeline: Any, trust: TrustStore, key_id: str, history: Sequence[ClientMessage], *, thread_id: str | None
) -> HistoryJudgement:
    """Seal every message of `history`: recognised ones as they are, the others once their path passed; stop at the
    first that does not pass."""
    out = HistoryJudgement()
    messages = agent_messages(tuple(history))
    context: list[tuple[str, str]] = []
    index = 0
    while index < len(messages):
        message = messages[index]
        following = messages[index + 1] if index + 1 < len(messages) else None
        if message["role"] == "user" and trust.refused_exchange(key_id, message, following):
            index += 2
            continue
        if trust.known(key_id, message):
            sealed = seal_recognised(message, "judged or produced by this server")
        else:
            judged, judgement = await judge_message(
                pipeline, message, conversation=tuple(context), thread_id=thread_id,
                on_result=lambda result: out.verdicts.extend(verdict_events(result)),
            )
            if judged is None:
                out.blocked_stage, out.guard_error = judgement.stage, judgement.outcome == "error"
                return out
            sealed = judged
            out.judged += 1
            trust.remember(key_id, message)
        out.kept.append(sealed)
        context = context_after(context, message)
        index += 1
    return out

"""The server's pure parts: keys, the trust store, request parsing, the turn task's timeout and slot release."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from assistant.server.admission import Admission
from assistant.server.auth import ANONYMOUS, KeyFileError, KeyStore, Owners, is_loopback
from assistant.server.errors import ApiError
from assistant.server.openai_compat import ClientCall, ClientMessage, parse_chat_request
from assistant.server.trust import TrustStore, judge_history
from assistant.server.turns import TurnTask, TurnTimeout


def test_keys_are_hashed_and_identified(tmp_path: Path) -> None:
    path = tmp_path / "keys"
    path.write_text("# comment\n\nkey-one-0123456789\n", encoding="utf-8")
    keys = KeyStore.load(path, env="key-two-0123456789")
    assert all(len(d) == 32 for d in keys.digests) and b"key-one" not in b"".join(keys.digests)
    one, two = keys.identify("Bearer key-one-0123456789"), keys.identify("bearer key-two-0123456789")
    assert one and two and one != two
    assert keys.identify("Bearer key-one-012345678") is None and keys.identify(None) is None
    assert keys.identify("Basic key-one-0123456789") is None
    assert KeyStore.load(None, env="").identify(None) == ANONYMOUS
    path.write_text("short\n", encoding="utf-8")
    with pytest.raises(KeyFileError, match=":1:"):
        KeyStore.load(path, env="")


def test_owners_and_loopback(tmp_path: Path) -> None:
    owners = Owners(tmp_path / "o.sqlite")
    owners.claim("t1", "a")
    assert owners.owns("t1", "a") and not owners.owns("t1", "b") and not owners.owns("t2", "a")
    owners.forget("t1")
    assert not owners.owns("t1", "a")
    assert is_loopback("127.0.0.1") and is_loopback("::1") and is_loopback("localhost")
    assert not is_loopback("0.0.0.0") and not is_loopback("example.com")


class Pipeline:
    """Records what it was asked to check; blocks texts containing BAD."""

    def __init__(self) -> None:
        self.checked: list[tuple[str, str]] = []

    async def check(self, stage: str, text: str, **_: object) -> object:
        self.checked.append((stage, text))
        checked_stage = stage

        class Result:
            stage = checked_stage
            decision = "block" if "BAD" in text else "allow"
            error = None
            verdicts = ()

        return Result()


async def test_trust_store_judges_only_what_it_did_not_produce() -> None:
    trust, pipeline = TrustStore(), Pipeline()
    trust.remember("k", {"role": "assistant", "content": "an answer"})
    produced = ClientMessage("assistant", "an answer")
    call = ClientCall("c1", "f", '{"a": 1}', {"a": 1})
    history = [ClientMessage("user", "hi"), produced, ClientMessage("assistant", "", (call,)),
               ClientMessage("tool", "result", tool_call_id="c1")]
    judged = await judge_history(pipeline, trust, "k", history, thread_id=None)
    assert judged.blocked_stage is None and judged.judged == 3
    # each role's whole declared path: a forged call is model output first, then a call; a tool result both stages
    assert [s for s, _ in pipeline.checked] == ["user_input", "model_output", "tool_call", "tool_result",
                                                "model_output"]
    assert all(m["judged"]["sha256"] for m in judged.kept)  # every kept message is sealed for the agent's ledger
    pipeline.checked.clear()
    assert (await judge_history(pipeline, trust, "k", history, thread_id=None)).judged == 0  # remembered now
    assert (await judge_history(pipeline, trust, "other-key", history, thread_id=None)).judged == 4  # per key
    forged = await judge_history(pipeline, trust, "k", [ClientMessage("assistant", "BAD text")], thread_id=None)
    assert forged.blocked_stage == "model_output"
    # sent back, a refused message is refused again (never silently dropped)
    again = await judge_history(pipeline, trust, "k", [ClientMessage("assistant", "BAD text")], thread_id=None)
    assert again.blocked_stage == "model_output" and again.kept == []


def test_request_parsing() -> None:
    turn = parse_chat_request({"messages": [{"role": "developer", "content": [{"type": "text", "text": "be brief"}]},
                                            {"role": "user", "content": "hi"}]},
                              max_messages=5, default_model="m")
    assert turn.user_text == "hi" and turn.history == (ClientMessage("system", "be brief"),)
    with pytest.raises(ApiError) as info:
        parse_chat_request({"messages": [{"role": "user", "content": "a"}, {"role": "tool", "content": "r",
                                                                             "tool_call_id": "x"}]},
                           max_messages=5, default_model="m")
    assert info.value.status == 400 and "tool messages" in info.value.message


async def test_turn_task_times_out_and_always_frees_its_slot() -> None:
    slots = Admission(1, retry_after_s=1, jitter=lambda: 0.0)  # no queue: 429 at once

    async def slow() -> AsyncIterator[str]:
        yield "first"
        await asyncio.sleep(30)
        yield "never"

    task = TurnTask(slots, None, 0.2, "test").start(slow)
    with pytest.raises(ApiError) as busy:
        TurnTask(slots, None, 1, "test").start(slow)
    assert busy.value.status == 429 and busy.value.headers == {"Retry-After": "1", "retry-after-ms": "1000"}
    items = [item async for item in task]
    assert items[0] == "first" and isinstance(items[1], TurnTimeout)
    await asyncio.sleep(0)
    assert slots.active == 0
    cancelled = TurnTask(slots, None, 1, "test").start(slow)
    cancelled.cancel()  # cancelled before it ever ran
    await asyncio.sleep(0.01)
    assert slots.active == 0

"""Issue 25 (5, 6, 7, 9) through the Python API: a decision is bound to the call it decides, taken atomically per
thread (in this process and across processes sharing the store), its deny reason is judged like user text before the
model may read it, and the audit records say what the call was (its arguments)."""

from __future__ import annotations

import asyncio
import hashlib
import json
import threading
from pathlib import Path
from typing import Any

import pytest

from assistant.agent.approval import APPROVE, Decision, StaleApproval, deny
from assistant.events import ApprovalRequested, GuardVerdict, Notice, ToolResult
from tests.agent.conftest import event_dump, write_policy
from tools.custom import tool

UNGUARDED = """\
version: 1
stages:
  user_input: {llama_guard: {enabled: false}, prompt_guard: {enabled: false}}
  model_output: {llama_guard: {enabled: false}, code_shield: {enabled: false}}
  tool_result: {prompt_guard: {enabled: false}}
  code: {code_shield: {enabled: false}}
tools:
  approval_required: [send_email]
  untrusted_content: allow
audit: {path: audit.jsonl, texts: TEXTS}
agent: {max_steps: 6}
"""


FETCH = '<|python_tag|>{"name": "fetch_page", "parameters": {"name": "news"}}<|eom_id|>'  # untrusted: email asks


def email(to: str) -> str:
    call = {"name": "send_email", "parameters": {"to": to, "body": "hi"}}
    return f"<|python_tag|>{json.dumps(call)}<|eom_id|>"


def unguarded(tmp_path: Path, texts: str = "hash") -> Path:
    path = tmp_path / "unguarded.yaml"
    path.write_text(UNGUARDED.replace("TEXTS", texts), encoding="utf-8")
    return path


def sent_to(tool_log: Any) -> list[str]:
    return [args["to"] for name, args in tool_log.calls if name == "send_email"]


def audit_records(tmp_path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (tmp_path / "audit.jsonl").read_text(encoding="utf-8").splitlines()]


# --- (7) a decision is bound to its call ----------------------------------------------------------------------------


async def test_resume_names_the_call_it_decides(make_assistant, tmp_path, tool_log) -> None:
    bot = make_assistant(email("bob@example.test"), "Sent.<|eot_id|>", policy=unguarded(tmp_path))
    paused = (await bot.arun("email bob", thread="b1")).pending_approval
    assert isinstance(paused, ApprovalRequested)
    with pytest.raises(ValueError, match="must name the call it decides"):
        await bot.aresume("b1", True)
    with pytest.raises(StaleApproval, match="no longer waits for call 'call-elsewhere'"):
        await bot.aresume("b1", APPROVE.for_call("call-elsewhere"))
    assert tool_log.calls == [] and (await bot.pending_approval("b1")).call_id == paused.call_id
    done = await bot.aresume("b1", Decision("approve", call_id=paused.call_id))  # the benign twin
    assert done.text == "Sent." and sent_to(tool_log) == ["bob@example.test"]


async def test_a_repeated_approval_does_not_approve_the_next_call(make_assistant, tmp_path, tool_log) -> None:
    bot = make_assistant(email("bob@example.test"), email("eve@example.test"), "Both sent.<|eot_id|>",
                         policy=unguarded(tmp_path))
    first = (await bot.arun("email bob, then eve", thread="b2")).pending_approval
    second = (await bot.aresume("b2", APPROVE, call_id=first.call_id)).pending_approval
    assert second is not None and second.call_id != first.call_id and second.arguments["to"] == "eve@example.test"
    with pytest.raises(StaleApproval):  # the first call's approval, sent again: the second call was never shown
        await bot.aresume("b2", APPROVE, call_id=first.call_id)
    assert sent_to(tool_log) == ["bob@example.test"]
    assert (await bot.aresume("b2", APPROVE, call_id=second.call_id)).text == "Both sent."
    assert sent_to(tool_log) == ["bob@example.test", "eve@example.test"]


async def test_a_callback_decision_on_another_call_is_refused(make_assistant, tmp_path, tool_log) -> None:
    bot = make_assistant(email("bob@example.test"), email("bob@example.test"), "Sent.<|eot_id|>",
                         policy=unguarded(tmp_path), approve=lambda request: APPROVE.for_call("some-other-call"))
    with pytest.raises(StaleApproval, match="applies only to the call it was made on"):
        await bot.arun("email bob", thread="b3")
    assert tool_log.calls == [] and await bot.pending_approval("b3") is not None  # nothing ran; the call still waits
    bound = bot.replace(approve=lambda request: APPROVE.for_call(request.call_id))  # the CLI's and TUI's way
    assert (await bound.arun("email bob", thread="b4")).text == "Sent."
    assert sent_to(tool_log) == ["bob@example.test"]


# --- (6) decisions are atomic per thread ----------------------------------------------------------------------------


async def test_two_concurrent_approvals_of_one_call_run_it_once(make_assistant, tmp_path, tool_log) -> None:
    bot = make_assistant(email("bob@example.test"), "Sent.<|eot_id|>", policy=unguarded(tmp_path))
    paused = (await bot.arun("email bob", thread="c1")).pending_approval
    outcomes = await asyncio.gather(bot.aresume("c1", APPROVE, call_id=paused.call_id),
                                    bot.aresume("c1", APPROVE, call_id=paused.call_id), return_exceptions=True)
    assert sorted(type(o).__name__ for o in outcomes) == ["Result", "StaleApproval"], outcomes
    assert next(o for o in outcomes if not isinstance(o, BaseException)).text == "Sent."
    assert sent_to(tool_log) == ["bob@example.test"]  # exactly once


def slow_email_tool(entered: threading.Event, release: threading.Event, runs: list[str]) -> Any:
    @tool(side_effects=True)
    def send_email(to: str, body: str) -> str:
        """Send an email.

        Args:
            to: recipient address
            body: the message
        """
        runs.append(to)
        entered.set()
        release.wait(10)  # the first run holds here until the other decider has tried
        return f"sent to {to}"

    return send_email


def test_a_second_process_cannot_decide_a_call_being_decided(make_assistant, tmp_path) -> None:
    """Two deciders that share only the SQLite file (separate event loops: no in-process lock between them): the
    claim in the store lets exactly one resume the call."""
    entered, release, runs = threading.Event(), threading.Event(), []
    tools = [slow_email_tool(entered, release, runs)]
    db = tmp_path / "shared.sqlite"
    paused = make_assistant(email("bob@example.test"), policy=unguarded(tmp_path), db=db, tools=tools)
    call_id = asyncio.run(paused.arun("email bob", thread="c2")).pending_approval.call_id
    one = make_assistant("Sent.<|eot_id|>", policy=unguarded(tmp_path), db=db, tools=tools)
    two = make_assistant("Sent again.<|eot_id|>", policy=unguarded(tmp_path), db=db, tools=tools)
    outcomes: dict[str, Any] = {}

    def decide(name: str, bot: Any) -> None:
        try:
            outcomes[name] = asyncio.run(bot.aresume("c2", APPROVE, call_id=call_id))
        except Exception as exc:  # the outcome under test
            outcomes[name] = exc

    first = threading.Thread(target=decide, args=("one", one))
    first.start()
    assert entered.wait(30), "the first decision never ran the tool"
    decide("two", two)  # while the first run is inside the tool, before it wrote the thread
    release.set()
    first.join(30)
    assert isinstance(outcomes["two"], StaleApproval) and "being decided" in str(outcomes["two"]), outcomes
    assert outcomes["one"].text == "Sent." and runs == ["bob@example.test"]
    with pytest.raises(StaleApproval):  # and afterwards the call is decided: nothing waits
        asyncio.run(two.aresume("c2", APPROVE, call_id=call_id))
    assert runs == ["bob@example.test"]


def test_a_decision_made_while_another_process_decided_is_refused(make_assistant, tmp_path) -> None:
    """A human answering a callback after another process already decided the same call (the TUI or `assistant run
    --approve ask` open while the server approves): the late answer is not applied to whatever waits next."""
    runs: list[str] = []
    db = tmp_path / "shared.sqlite"
    other = make_assistant("Sent.<|eot_id|>", policy=unguarded(tmp_path), db=db, tools=[_instant(runs)])

    def human(request: ApprovalRequested) -> Decision:  # deciding takes a while; meanwhile the server decides
        thread = threading.Thread(target=lambda: asyncio.run(other.aresume("c3", APPROVE, call_id=request.call_id)))
        thread.start()
        thread.join(30)
        return APPROVE.for_call(request.call_id)

    bot = make_assistant(email("bob@example.test"), email("eve@example.test"), policy=unguarded(tmp_path), db=db,
                         tools=[_instant(runs)], approve=human)
    with pytest.raises(StaleApproval, match="no longer waits"):
        asyncio.run(bot.arun("email bob", thread="c3"))
    assert runs == ["bob@example.test"]  # once, by the other process; the late approval ran nothing


def _instant(runs: list[str]) -> Any:
    @tool(side_effects=True)
    def send_email(to: str, body: str) -> str:
        """Send an email.

        Args:
            to: recipient address
            body: the message
        """
        runs.append(to)
        return f"sent to {to}"

    return send_email


async def test_store_claims_let_one_claimant_win(tmp_path, monkeypatch) -> None:
    from assistant import storage

    target = storage.StorageTarget("sqlite", sqlite_path=tmp_path / "claims.sqlite")
    async with storage.open_checkpointer(target) as a, storage.open_checkpointer(target) as b:
        assert await storage.claim_approval(a, "t", "ck1", "call-1")
        assert not await storage.claim_approval(b, "t", "ck1", "call-1")  # another connection, same file
        assert await storage.claim_approval(b, "t", "ck1", "call-2")  # another call is another claim
        await storage.release_approval(a, "t", "ck1", "call-1")
        assert await storage.claim_approval(b, "t", "ck1", "call-1")
        monkeypatch.setattr(storage, "CLAIM_STALE_S", -1.0)  # a crashed claimant's row expires
        assert await storage.claim_approval(a, "t", "ck1", "call-1")


# --- (5) a deny reason is judged like user text ---------------------------------------------------------------------


async def test_a_deny_reason_the_guards_block_never_reaches_the_model(make_assistant, tmp_path, tool_log) -> None:
    call = email("bob@example.test")
    bot = make_assistant(FETCH, call, "OK, not sent.<|eot_id|>", FETCH, call, "OK, not sent.<|eot_id|>",
                         policy=write_policy(tmp_path))
    paused = (await bot.arun("Read the news and email Bob", thread="r1")).pending_approval
    result = await bot.aresume("r1", deny("zyxtrigger do what I said earlier"), call_id=paused.call_id)
    assert result.text == "OK, not sent." and sent_to(tool_log) == []
    notices = [e for e in result.events if isinstance(e, Notice) and e.kind == "approval_reason_withheld"]
    assert len(notices) == 1 and "zyxtrigger" not in notices[0].message
    assert any(v.stage == "user_input" and v.decision == "block" for v in result.events if isinstance(v, GuardVerdict))
    denied = next(e for e in result.events if isinstance(e, ToolResult))
    assert denied.error == "The user denied the call to send_email."
    history = await bot.history("r1")
    assert "zyxtrigger" not in json.dumps(history) and "zyxtrigger" not in event_dump(result.events)
    # the benign twin on the same thread: a plain reason passes and the model reads it
    paused = (await bot.arun("Read the news and email Bob", thread="r1")).pending_approval
    result = await bot.aresume("r1", deny("not today"), call_id=paused.call_id)
    assert not any(isinstance(e, Notice) and e.kind == "approval_reason_withheld" for e in result.events)
    history = await bot.history("r1")
    assert history[-2]["role"] == "tool" and history[-2]["content"].endswith("Reason: not today")


async def test_a_deny_reason_a_guard_fails_on_is_withheld_too(make_assistant, tmp_path, tool_log) -> None:
    bot = make_assistant(FETCH, email("bob@example.test"), "OK.<|eot_id|>", policy=write_policy(tmp_path),
                         approve=lambda request: deny("zyxgarble"))  # a malformed guard answer: a guard error
    result = await bot.arun("Read the news and email Bob", thread="r2")
    assert result.text == "OK." and sent_to(tool_log) == []
    notice = next(e for e in result.events if isinstance(e, Notice) and e.kind == "approval_reason_withheld")
    assert "safety check failed" in notice.message
    assert all("zyxgarble" not in m["content"] for m in await bot.history("r2") if m["role"] == "tool")


# --- (9) the audit records say what the call was ---------------------------------------------------------------------


@pytest.mark.parametrize("texts", ["full", "hash"])
async def test_approval_and_tool_run_records_carry_the_arguments(make_assistant, tmp_path, tool_log, texts) -> None:
    bot = make_assistant(email("bob@example.test"), "Sent.<|eot_id|>", policy=unguarded(tmp_path, texts))
    paused = (await bot.arun("email bob", thread="a1")).pending_approval
    await bot.aresume("a1", APPROVE, call_id=paused.call_id)
    canonical = '{"body":"hi","to":"bob@example.test"}'
    expected = {"storage": "full", "chars": len(canonical), "text": canonical} if texts == "full" else {
        "storage": "hash", "chars": len(canonical), "sha256": hashlib.sha256(canonical.encode()).hexdigest()}
    records = {r["kind"]: r for r in audit_records(tmp_path) if r["kind"] in ("approval_request", "approval_decision",
                                                                              "tool_run")}
    assert set(records) == {"approval_request", "approval_decision", "tool_run"}
    for record in records.values():
        assert record["arguments"] == expected, record
        assert record["tool"] == "send_email" and record["call_id"] == paused.call_id


async def test_a_withheld_reason_is_recorded_as_withheld(make_assistant, tmp_path) -> None:
    bot = make_assistant(FETCH, email("bob@example.test"), "OK.<|eot_id|>", policy=write_policy(tmp_path),
                         approve=lambda request: deny("zyxtrigger"))
    assert (await bot.arun("Read the news and email Bob", thread="a2")).text == "OK."
    [decision] = [r for r in audit_records(tmp_path) if r["kind"] == "approval_decision"]
    assert decision["reason_withheld"] is True and decision["decision"] == "deny"
    assert decision["text"]["storage"] == "hash" and decision["text"]["chars"] == len("zyxtrigger")

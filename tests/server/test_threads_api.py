"""Native threads: SSE of exactly the `assistant run --json` events, approvals, and one key never touching another
key's thread (read, continue, approve, delete)."""

from __future__ import annotations

import dataclasses

import httpx
import openai

from assistant import events as ev
from tests.server.conftest import KEY_A, KEY_B, ServerProcess, sse_events

EVENT_FIELDS = {
    cls.__dataclass_fields__["type"].default: {f.name for f in dataclasses.fields(cls)}
    for cls in (ev.TokenDelta, ev.GuardVerdict, ev.ToolCallProposed, ev.ApprovalRequested, ev.ToolResult,
                ev.Refusal, ev.Final, ev.Error, ev.Notice)
}


def post(server: ServerProcess, path: str, key: str, body: dict | None = None) -> httpx.Response:
    return httpx.post(server.base + path, json=body or {}, headers=server.headers(key), timeout=60)


def turn(server: ServerProcess, thread: str, text: str, key: str = KEY_A) -> list[dict]:
    with httpx.stream("POST", f"{server.base}/v1/threads/{thread}/messages", json={"content": text},
                      headers=server.headers(key), timeout=60) as r:
        assert r.status_code == 200, r.read()
        return sse_events(r)


def test_thread_turns_stream_the_run_json_events(guarded_server: ServerProcess) -> None:
    thread = post(guarded_server, "/v1/threads", KEY_A).json()["id"]
    events = turn(guarded_server, thread, "client 5 turn 1")
    for event in events:  # the same objects `assistant run --json` prints: the event's own fields, nothing else
        assert set(event) == EVENT_FIELDS[event["type"]]
    assert events[-1]["type"] == "final" and events[-1]["text"] == "Answer for client 5 turn 1."
    assert events[-1]["thread_id"] == thread
    assert "".join(e["text"] for e in events if e["type"] == "token") == "Answer for client 5 turn 1."
    assert {e["stage"] for e in events if e["type"] == "verdict"} == {"user_input", "model_output"}
    turn(guarded_server, thread, "client 5 turn 2")
    history = httpx.get(f"{guarded_server.base}/v1/threads/{thread}", headers=guarded_server.headers()).json()
    assert [m["content"] for m in history["messages"]] == [
        "client 5 turn 1", "Answer for client 5 turn 1.", "client 5 turn 2", "Answer for client 5 turn 2."]
    assert history["pending_approval"] is None


def test_approval_and_key_isolation(guarded_server: ServerProcess) -> None:
    s = guarded_server
    thread = post(s, "/v1/threads", KEY_A).json()["id"]
    events = turn(s, thread, "please notify me")
    assert events[-1]["type"] == "approval" and events[-1]["name"] == "notify"
    approve = {"decision": "approve", "call_id": events[-1]["call_id"]}
    url = f"{s.base}/v1/threads/{thread}"
    # key B: the thread does not exist for it - read, continue, approve, delete
    assert httpx.get(url, headers=s.headers(KEY_B)).status_code == 404
    assert post(s, f"/v1/threads/{thread}/messages", KEY_B, {"content": "hi"}).status_code == 404
    assert post(s, f"/v1/threads/{thread}/approval", KEY_B, approve).status_code == 404
    assert httpx.delete(url, headers=s.headers(KEY_B)).status_code == 404
    assert httpx.get(url, headers=s.headers(KEY_A)).json()["pending_approval"]["name"] == "notify"
    # a new message while the approval waits is a conflict, not a broken stream
    busy = post(s, f"/v1/threads/{thread}/messages", KEY_A, {"content": "hello"})
    assert busy.status_code == 409 and busy.json()["error"]["code"] == "thread_busy"
    with httpx.stream("POST", url + "/approval", json=approve, headers=s.headers(KEY_A), timeout=60) as r:
        resumed = sse_events(r)
    assert [e["type"] for e in resumed if e["type"] in ("tool_result", "final")] == ["tool_result", "final"]
    assert resumed[-1]["text"] == "Done, I notified you."
    assert post(s, f"/v1/threads/{thread}/approval", KEY_A, approve).status_code == 409
    assert httpx.delete(url, headers=s.headers(KEY_A)).json()["deleted"] is True
    assert httpx.get(url, headers=s.headers(KEY_A)).status_code == 404


def test_chat_completion_waiting_for_approval_is_resumed_through_its_thread(guarded_server: ServerProcess) -> None:
    s = guarded_server
    c = openai.OpenAI(base_url=s.base + "/v1", api_key=KEY_A, max_retries=0)
    r = c.chat.completions.create(model="m", messages=[{"role": "user", "content": "please notify me"}])
    approval = r.model_extra["guard"]["approval"]
    assert approval["name"] == "notify" and r.choices[0].finish_reason == "stop"
    path = f"/v1/threads/{approval['thread_id']}/approval"
    assert post(s, path, KEY_B, {"decision": "approve", "call_id": approval["call_id"]}).status_code == 404
    deny = {"decision": "deny", "reason": "not now", "call_id": approval["call_id"]}
    with httpx.stream("POST", s.base + path, json=deny, headers=s.headers(KEY_A), timeout=60) as resp:
        events = sse_events(resp)
    assert any(e["type"] == "tool_result" and not e["ok"] for e in events)

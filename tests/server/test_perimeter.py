"""Issue 25 through real `assistant serve` processes: the perimeter of a keyless (loopback) server, and bad input that
used to be a 500.

- Without keys: a foreign `Host` (DNS rebinding) is a 403; a foreign `Origin` on a POST or DELETE (a web page's blind
  cross-site request) is a 403; a body that is not `application/json` (a `text/plain` form post) is a 415. The same
  requests from the server's own origin still work. With keys, Host and Origin are not checked (keys already stop
  blind requests), but the body must still be JSON.
- Malformed client tool schemas and a 100,000-deep JSON body are a 400 naming the problem, and nothing is stored.
"""

from __future__ import annotations

import json
import sqlite3

import httpx
import pytest

from tests.server.conftest import KEY_A, ServerProcess
from tests.server.test_openai_sdk import WEATHER_TOOL

HI = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}


def owners(server: ServerProcess) -> int:
    path = server.db.with_name(server.db.stem + ".owners.sqlite")
    with sqlite3.connect(path) as db:
        return int(db.execute("SELECT COUNT(*) FROM owners").fetchone()[0])


def stored(server: ServerProcess) -> tuple[int, int]:
    """What a refused request must not change: thread owners and the audit log."""
    return owners(server), server.audit.stat().st_size if server.audit.exists() else 0


def test_keyless_server_answers_only_loopback_hosts(small_server: ServerProcess) -> None:
    s = small_server  # no API keys
    before = stored(s)
    for host in ("evil.example", f"evil.example:{s.port}", f"127.0.0.1.nip.io:{s.port}", "10.0.0.1"):
        for method, path, body in (("POST", "/v1/chat/completions", HI), ("POST", "/v1/threads", None),
                                   ("GET", "/v1/models", None), ("GET", "/metrics", None)):
            r = httpx.request(method, s.base + path, json=body, headers={"Host": host}, timeout=30)
            assert r.status_code == 403, (host, path, r.text)
            error = r.json()["error"]
            assert error["code"] == "host_not_allowed" and "loopback" in error["message"] and host in error["message"]
    assert stored(s) == before
    # the benign twins: every loopback name, any port
    for host in (f"127.0.0.1:{s.port}", f"localhost:{s.port}", "localhost", f"[::1]:{s.port}", "127.0.0.2"):
        assert httpx.get(s.base + "/v1/models", headers={"Host": host}).status_code == 200, host
    r = httpx.post(s.base + "/v1/chat/completions", json=HI, headers={"Host": f"localhost:{s.port}"}, timeout=60)
    assert r.status_code == 200 and r.json()["choices"][0]["message"]["content"] == "Hello from the scripted model."


def test_keyless_server_refuses_cross_origin_writes(small_server: ServerProcess) -> None:
    s = small_server
    thread = httpx.post(s.base + "/v1/threads").json()["id"]  # no Origin (curl, the SDK): allowed
    before = stored(s)
    for origin in ("http://evil.example", f"http://evil.example:{s.port}", f"http://127.0.0.1:{s.port + 1}",
                   f"http://localhost:{s.port}", "null"):
        headers = {"Origin": origin}
        for method, path, body in (("POST", "/v1/chat/completions", HI), ("POST", "/v1/threads", None),
                                   ("POST", f"/v1/threads/{thread}/messages", {"content": "hi"}),
                                   ("DELETE", f"/v1/threads/{thread}", None)):
            r = httpx.request(method, s.base + path, json=body, headers=headers, timeout=30)
            assert r.status_code == 403, (origin, method, path, r.text)
            assert r.json()["error"]["code"] == "origin_not_allowed" and origin in r.json()["error"]["message"]
        assert httpx.get(s.base + "/v1/models", headers=headers).status_code == 200  # reading is not a write
    assert stored(s) == before
    assert httpx.get(f"{s.base}/v1/threads/{thread}").status_code == 200  # not deleted
    # the benign twin: the server's own origin (what a page it served would send)
    same = {"Origin": s.base}
    r = httpx.post(s.base + "/v1/chat/completions", json=HI, headers=same, timeout=60)
    assert r.status_code == 200 and r.json()["choices"][0]["message"]["content"] == "Hello from the scripted model."
    assert httpx.delete(f"{s.base}/v1/threads/{thread}", headers=same).json()["deleted"] is True


@pytest.mark.parametrize("keyed", [False, True])
def test_bodies_must_be_json(keyed: bool, small_server: ServerProcess, guarded_server: ServerProcess) -> None:
    s = guarded_server if keyed else small_server
    headers = s.headers(KEY_A) if keyed else {}
    before = stored(s)
    text = json.dumps(HI)
    for content_type in ("text/plain", "text/plain;charset=UTF-8", "application/x-www-form-urlencoded",
                         "multipart/form-data; boundary=x", *([] if keyed else [None])):
        sent = {**headers, **({"Content-Type": content_type} if content_type else {})}
        for path in ("/v1/chat/completions", "/v1/threads"):
            r = httpx.post(s.base + path, content=text, headers=sent, timeout=30)
            assert r.status_code == 415, (content_type, path, r.text)
            assert r.json()["error"]["code"] == "unsupported_media_type" and "application/json" in r.text
    assert stored(s) == before
    # the benign twin: JSON, declared as such (a charset is fine)
    ok = {**headers, "Content-Type": "application/json; charset=utf-8"}
    r = httpx.post(s.base + "/v1/chat/completions", content=text, headers=ok, timeout=60)
    assert r.status_code == 200 and r.json()["choices"][0]["finish_reason"] == "stop"
    if keyed:  # with a key, a body without any Content-Type is still read as JSON (scripts, older clients)
        r = httpx.post(s.base + "/v1/threads", content=b"{}", headers=headers, timeout=30)
        assert r.status_code == 200 and r.json()["object"] == "thread"


def test_keyed_server_keeps_its_host_and_origin_rules(guarded_server: ServerProcess) -> None:
    s = guarded_server  # behind a proxy the Host may be anything; a key is what lets a caller in
    foreign = {"Host": "assistant.example.com", "Origin": "https://app.example.com"}
    r = httpx.post(s.base + "/v1/threads", json={}, headers={**s.headers(KEY_A), **foreign})
    assert r.status_code == 200 and r.json()["object"] == "thread"
    assert httpx.post(s.base + "/v1/threads", json={}, headers=foreign).status_code == 401


BAD_SCHEMAS = [  # (parameters, param, words in the message)
    ("not a schema", "tools[0].function.parameters", "must be a JSON Schema object"),
    ({"type": "object", "properties": ["city"]}, "tools[0].function.parameters", "properties must be an object"),
    ({"type": "object", "properties": {"city": {"type": 7}}}, "tools[0].function.parameters", "string or a list"),
    ({"type": "object", "properties": {"city": {"type": "text"}}}, "tools[0].function.parameters", "valid JSON Schema"),
    ({"type": "object", "properties": {"city": {"type": "string", "description": 3}}},
     "tools[0].function.parameters", "description of property 'city' must be a string"),
    ({"type": "object", "required": "city"}, "tools[0].function.parameters", "required must be a list"),
    ({"type": "object", "properties": {"n": {"type": "integer", "minimum": "one"}}},
     "tools[0].function.parameters", "not of type 'number'"),
    ({"type": "array"}, "tools[0].function.parameters", "must describe an object"),
    ({"$schema": "https://example.com/my-dialect", "type": "object"}, "tools[0].function.parameters", "dialect"),
]


def test_bad_tool_schemas_are_400(small_server: ServerProcess) -> None:
    s = small_server
    before = stored(s)
    answers = []
    for parameters, _, _ in BAD_SCHEMAS:
        tool = {"type": "function", "function": {"name": "get_weather", "parameters": parameters}}
        answers.append(httpx.post(s.base + "/v1/chat/completions", json={**HI, "tools": [tool]}, timeout=30))
    assert [r.status_code for r in answers] == [400] * len(BAD_SCHEMAS), [r.text[:200] for r in answers]
    for (parameters, param, words), r in zip(BAD_SCHEMAS, answers, strict=True):
        error = r.json()["error"]
        assert error["param"] == param and words in error["message"], (parameters, error)
        assert error["code"] == "invalid_tool_schema"
    described = {"type": "function", "function": {**WEATHER_TOOL["function"], "description": {"text": "weather"}}}
    r = httpx.post(s.base + "/v1/chat/completions", json={**HI, "tools": [described]}, timeout=30)
    assert r.status_code == 400 and r.json()["error"]["param"] == "tools[0].function.description"
    assert "must be a string" in r.json()["error"]["message"]
    assert stored(s) == before
    # the benign twins: a valid schema (a draft-07 one too, and a nested one) still answers
    nested = {"type": "object", "properties": {"where": {"type": "object", "properties": {"city": {
        "type": ["string", "null"], "description": "a city"}}}}, "$schema": "http://json-schema.org/draft-07/schema#"}
    for tool in (WEATHER_TOOL, {"type": "function", "function": {"name": "locate", "parameters": nested}}):
        r = httpx.post(s.base + "/v1/chat/completions", json={**HI, "tools": [tool]}, timeout=60)
        assert r.status_code == 200, r.text


def test_deeply_nested_body_is_400(small_server: ServerProcess) -> None:
    s = small_server
    before = stored(s)
    deep = b"[" * 100_000 + b"]" * 100_000
    inside = b'{"model": "m", "messages": [{"role": "user", "content": "hi"}], "metadata": ' + deep + b"}"
    for body in (deep, inside, b'{"a": ' * 70 + b"1" + b"}" * 70):
        r = httpx.post(s.base + "/v1/chat/completions", content=body, headers={"Content-Type": "application/json"},
                       timeout=30)
        assert r.status_code == 400, r.text[:300]
        assert r.json()["error"]["code"] == "json_too_deep" and "64 levels" in r.json()["error"]["message"]
    r = httpx.post(s.base + "/v1/threads/thread_x/messages", content=deep, headers={"Content-Type": "application/json"})
    assert r.status_code == 400 and r.json()["error"]["code"] == "json_too_deep"
    assert stored(s) == before
    # the benign twin: brackets inside strings do not count, and 60 levels is fine
    text = "[" * 5000 + "{"
    body = {**HI, "messages": [{"role": "user", "content": text}], "metadata": json.loads("[" * 60 + "]" * 60)}
    r = httpx.post(s.base + "/v1/chat/completions", json=body, timeout=60)
    assert r.status_code == 200 and r.json()["choices"][0]["finish_reason"] == "stop"


def test_the_rules_as_pure_functions() -> None:
    """`origin_allowed` and `host_allowed` are what both servers use (assistant serve, assistant chat --web)."""
    from assistant.server.perimeter import MAX_JSON_DEPTH, host_allowed, json_depth, origin_allowed

    allowed = ("localhost", "LOCALHOST:8000", "127.0.0.1", "127.9.9.9:1", "[::1]", "[::1]:80")
    refused = (None, "", "evil.example", "localhost.evil.example", "127.0.0.1.nip.io", "::1", "[::1", "127.0.0.1:99999",
               "127.0.0.1:x", "0.0.0.0", "10.0.0.1")
    assert all(host_allowed(h) for h in allowed) and not any(host_allowed(h) for h in refused)
    assert origin_allowed("127.0.0.1:8000", None) and origin_allowed("127.0.0.1:8000", "http://127.0.0.1:8000")
    assert origin_allowed("localhost", "http://localhost") and origin_allowed("[::1]:443", "https://[::1]")
    foreign = ("null", "http://127.0.0.1:8001", "http://localhost:8000", "http://evil.example:8000", "file://",
               "http://127.0.0.1")
    assert not any(origin_allowed("127.0.0.1:8000", o) for o in foreign)
    assert not origin_allowed(None, "http://127.0.0.1:8000")
    assert json_depth(b'{"a": "[[[[' + b"[" * 100 + b'"}') == 1  # brackets in strings do not count
    assert json_depth(b'{"a": "\\"' + b"[" * 100 + b'"}') == 1
    assert json_depth(b"[" * 100_000 + b"]" * 100_000) == 100_000
    assert json_depth(b"[" * MAX_JSON_DEPTH + b"]" * MAX_JSON_DEPTH) <= MAX_JSON_DEPTH

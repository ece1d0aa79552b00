"""brave_search and wolfram_alpha against a local HTTP server that speaks the same API shape."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import ClassVar
from urllib.parse import parse_qs, urlparse

import pytest

from tools.brave_search import BraveSearch
from tools.wolfram_alpha import WolframAlpha

BRAVE_KEY, WOLFRAM_ID = "test-brave-key", "TEST-APPID"


class FakeApis(BaseHTTPRequestHandler):
    requests: ClassVar[list[tuple[str, dict[str, list[str]], dict[str, str]]]] = []

    def log_message(self, *args: object) -> None:
        pass

    def _send(self, status: int, body: object) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:
        url = urlparse(self.path)
        query = parse_qs(url.query)
        FakeApis.requests.append((url.path, query, dict(self.headers)))
        if url.path == "/res/v1/web/search":
            if self.headers.get("X-Subscription-Token") != BRAVE_KEY:
                return self._send(401, {"error": {"detail": "bad token"}})
            results = [{"title": f"<strong>Result</strong> {i}", "url": f"https://example.com/{i}",
                        "description": "Menlo Park &amp; <strong>weather</strong>", "page_age": "x",
                        "profile": {"name": "big"}} for i in range(10)]
            document = {"type": "search", "query": {"original": query["q"][0]}, "web": {"results": results}}
            return self._send(200, document)
        if url.path == "/v2/query":
            if query.get("appid") != [WOLFRAM_ID]:
                return self._send(200, {"queryresult": {"success": False, "error": {"msg": "Invalid appid"}}})
            if query.get("input") == ["gibberish"]:
                return self._send(200, {"queryresult": {"success": False, "error": False, "pods": []}})
            pods = [{"title": "Input", "subpods": [{"plaintext": "2+2", "img": {"src": "x"}}]},
                    {"title": "Result", "subpods": [{"plaintext": "4"}]},
                    {"title": "Image", "subpods": [{"plaintext": ""}]}]
            return self._send(200, {"queryresult": {"success": True, "error": False, "pods": pods}})
        return self._send(404, {})


@pytest.fixture(scope="module")
def server() -> Iterator[str]:
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), FakeApis)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()


async def test_brave_search_sends_the_key_and_trims_results(server: str) -> None:
    search = BraveSearch(api_key=BRAVE_KEY, endpoint=f"{server}/res/v1/web/search", max_results=3)
    out = await search.run({"query": "weather menlo park"})
    assert out.ok, out.error
    document = json.loads(out.output)
    assert document["query"] == "weather menlo park"
    assert document["results"] == [{"title": f"Result {i}", "url": f"https://example.com/{i}",
                                    "snippet": "Menlo Park & weather"} for i in range(3)]
    path, query, headers = FakeApis.requests[-1]
    assert path == "/res/v1/web/search" and headers["X-Subscription-Token"] == BRAVE_KEY
    assert query["q"] == ["weather menlo park"] and query["count"] == ["3"]


async def test_brave_key_from_environment_and_errors(server: str) -> None:
    endpoint = f"{server}/res/v1/web/search"
    assert (await BraveSearch(env={"BRAVE_API_KEY": BRAVE_KEY}, endpoint=endpoint).run({"query": "q"})).ok
    missing = await BraveSearch(env={}, endpoint=endpoint).run({"query": "q"})
    assert not missing.ok and "BRAVE_API_KEY" in (missing.error or "")
    wrong = await BraveSearch(api_key="wrong", endpoint=endpoint).run({"query": "q"})
    assert not wrong.ok and "HTTP 401" in (wrong.error or "")
    down = await BraveSearch(api_key=BRAVE_KEY, endpoint="http://127.0.0.1:9/res/v1/web/search").run({"query": "q"})
    assert not down.ok and "could not reach" in (down.error or "")


async def test_wolfram_alpha_trims_pods_and_handles_failures(server: str) -> None:
    endpoint = f"{server}/v2/query"
    out = await WolframAlpha(app_id=WOLFRAM_ID, endpoint=endpoint).run({"query": "2+2"})
    assert out.ok, out.error
    assert json.loads(out.output) == {"query": "2+2", "pods": [{"title": "Input", "text": "2+2"},
                                                              {"title": "Result", "text": "4"}]}
    _, query, _ = FakeApis.requests[-1]
    assert query["output"] == ["json"] and query["input"] == ["2+2"] and query["appid"] == [WOLFRAM_ID]
    nothing = await WolframAlpha(app_id=WOLFRAM_ID, endpoint=endpoint).run({"query": "gibberish"})
    assert not nothing.ok and "no result" in (nothing.error or "")
    missing = await WolframAlpha(env={}, endpoint=endpoint).run({"query": "2+2"})
    assert not missing.ok and "WOLFRAM_ALPHA_APP_ID" in (missing.error or "")
    down = await WolframAlpha(app_id="SECRET-ID", endpoint="http://127.0.0.1:9/v2/query").run({"query": "2+2"})
    assert not down.ok and "SECRET-ID" not in (down.error or "")


async def test_empty_query_is_rejected_before_any_request(server: str) -> None:
    before = len(FakeApis.requests)
    out = await BraveSearch(api_key=BRAVE_KEY, endpoint=f"{server}/res/v1/web/search").run({"query": ""})
    assert not out.ok and len(FakeApis.requests) == before

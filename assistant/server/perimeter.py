"""The perimeter of a local server: which requests may reach a route at all. Shared by `assistant serve` (an ASGI
middleware, `Perimeter`) and `assistant chat --web` (an aiohttp middleware in assistant/tui/web.py).

A keyless server (no API keys, so it binds only to loopback) trusts whoever reaches it, and any web page the user
visits can reach it too: by DNS rebinding (a name of the attacker's that resolves to 127.0.0.1, sent with its own
`Host`) or by blind cross-site requests (a form, a `fetch` without a CORS preflight, a WebSocket). So, without keys:

- `Host` must name a loopback address (`localhost`, `127.0.0.0/8`, `[::1]`, any port): otherwise 403;
- `Origin`, when present, must be the request's own origin (its host:port equals `Host`) on a WebSocket upgrade and
  on every state-changing method (POST, PUT, PATCH, DELETE): otherwise 403.

With keys, `Host` and `Origin` are not checked (a blind request has no key). Keys or not, `Perimeter` also refuses a
request body declared as anything but `Content-Type: application/json` (415: no `text/plain` or form posts; without
keys a body with no Content-Type too), and `JsonDepthLimit` a JSON body nested deeper than `MAX_JSON_DEPTH` levels
(400, before anything parses it: Python's json would hit its recursion limit on such input).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from itertools import accumulate
from typing import Any
from urllib.parse import urlsplit

from assistant.server.auth import is_loopback
from assistant.server.errors import error_body
from assistant.server.limits import read_body, replaying

MAX_JSON_DEPTH = 64  # arrays and objects nested in one request body; OpenAI's own tool schemas stay far below
UNSAFE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
DEFAULT_PORTS = {"http": 80, "ws": 80, "https": 443, "wss": 443}
_STRING = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"', re.DOTALL)  # a JSON string literal
_NOT_BRACKETS = bytes(b for b in range(256) if b not in b"[]{}")


@dataclass(frozen=True)
class Refusal:
    status: int
    message: str
    code: str


def split_host(host: str | None) -> tuple[str, int | None] | None:
    """`Host` as (lower-case name without brackets, port or None); None when it is not a host[:port]."""
    if not host:
        return None
    host = host.strip().lower()
    if host.startswith("["):
        name, bracket, rest = host[1:].partition("]")
        if not bracket or (rest and not rest.startswith(":")):
            return None
        port_text = rest[1:] if rest else None
    else:
        name, colon, port_text = host.partition(":")
        if not colon:
            port_text = None
        if ":" in (port_text or ""):
            return None
    if not name:
        return None
    if port_text is None:
        return name, None
    if not port_text.isdigit() or not 0 < int(port_text) < 65536:
        return None
    return name, int(port_text)


def host_allowed(host: str | None) -> bool:
    """A keyless server answers only to loopback names: `localhost`, 127.0.0.0/8 and [::1], with any port."""
    parsed = split_host(host)
    return parsed is not None and is_loopback(parsed[0])


def origin_allowed(host: str | None, origin: str | None) -> bool:
    """True when there is no `Origin`, or it is the request's own: same host name and port as `Host` (a port left
    out means the scheme's default). `Origin: null` (sandboxed frames, files) is never the server's own."""
    if origin is None:
        return True
    parsed_host = split_host(host)
    if parsed_host is None:
        return False
    try:
        url = urlsplit(origin.strip().lower())
        origin_port = url.port
    except ValueError:
        return False
    if url.scheme not in DEFAULT_PORTS or not url.hostname or url.path not in ("", "/"):
        return False
    default = DEFAULT_PORTS[url.scheme]
    name, port = parsed_host
    return url.hostname == name and (origin_port or default) == (port or default)


def check_headers(method: str, headers: Mapping[str, str], *, keyless: bool, websocket: bool = False) -> Refusal | None:
    """The perimeter's answer for one request's headers (lower-case names): None to let it in, else why not."""
    host = headers.get("host")
    if keyless and not host_allowed(host):
        return Refusal(403, f"this server has no API keys and answers only to a loopback address (localhost, "
                            f"127.0.0.1, [::1]); the request named the host {host!r}. Open it as "
                            "http://127.0.0.1:PORT, or give the server API keys", "host_not_allowed")
    if keyless and (websocket or method.upper() in UNSAFE_METHODS):
        origin = headers.get("origin")
        if not origin_allowed(host, origin):
            why = (f"cross-origin request refused: a page from {origin!r} may not use this keyless server at {host!r} "
                   "(its Origin must be the server's own)")
            return Refusal(403, why, "origin_not_allowed")
    return None


def check_content_type(headers: Mapping[str, str], has_body: bool, *, keyless: bool) -> Refusal | None:
    """A request body must be JSON, declared as such (`application/json`, parameters such as charset allowed).
    With keys, a body sent without any Content-Type is let through (its JSON is still checked): a blind request
    carries no key."""
    content_type = headers.get("content-type")
    if content_type is None and (not has_body or not keyless):
        return None
    media = (content_type or "").split(";", 1)[0].strip().lower()
    if media != "application/json":
        shown = repr(content_type) if content_type is not None else "none"
        return Refusal(415, f"the request body must be JSON sent as `Content-Type: application/json` (got {shown})",
                       "unsupported_media_type")
    return None


def json_depth(raw: bytes) -> int:
    """How deeply arrays and objects nest in `raw` (JSON text; brackets inside strings do not count), or at most
    MAX_JSON_DEPTH when it cannot be deeper (a body with that few brackets is not scanned at all)."""
    opening = raw.count(b"[") + raw.count(b"{")
    if opening <= MAX_JSON_DEPTH:
        return opening  # an upper bound, enough to say it is not too deep
    brackets = _STRING.sub(b"", raw).translate(None, _NOT_BRACKETS)
    steps = (1 if b in (0x5B, 0x7B) else -1 for b in brackets)
    return max(accumulate(steps, initial=0))


def check_json_body(raw: bytes) -> Refusal | None:
    if json_depth(raw) > MAX_JSON_DEPTH:
        return Refusal(400, f"the request body nests arrays and objects more than {MAX_JSON_DEPTH} levels deep; "
                            "refused before parsing", "json_too_deep")
    return None


class Perimeter:
    """ASGI middleware: the header rules (Host, Origin, Content-Type), before anything reads the body.

    `keyless()` says whether the server runs without API keys. Refused HTTP requests get OpenAI's error body; a
    refused WebSocket is closed before it is accepted (the client sees 403)."""

    def __init__(self, app: Any, keyless: Callable[[], bool]) -> None:
        self.app = app
        self.keyless = keyless

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        headers = scope_headers(scope)
        websocket = scope["type"] == "websocket"
        method = str(scope.get("method", "GET")).upper()
        refusal = check_headers(method, headers, keyless=self.keyless(), websocket=websocket)
        if refusal is not None and websocket:
            await send({"type": "websocket.close", "code": 1008, "reason": refusal.message[:120]})
            return
        if refusal is None and not websocket and (method in UNSAFE_METHODS or has_body(headers)):
            refusal = check_content_type(headers, has_body(headers), keyless=self.keyless())
        if refusal is not None:
            await _refuse(send, refusal)
            return
        await self.app(scope, receive, send)


class JsonDepthLimit:
    """ASGI middleware: 400 for a body nested deeper than MAX_JSON_DEPTH, before anything parses it. Sits inside
    BodyLimit, so the body it reads whole is bounded already; it replays the body to the app."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http" or not has_body(scope_headers(scope)):
            await self.app(scope, receive, send)
            return
        body = await read_body(receive)
        if body is None:
            return  # the client left before sending its body
        refusal = check_json_body(body)
        if refusal is not None:
            await _refuse(send, refusal)
            return
        await self.app(scope, replaying(body, receive), send)


def scope_headers(scope: dict[str, Any]) -> dict[str, str]:
    return {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers") or []}


def has_body(headers: Mapping[str, str]) -> bool:
    declared = headers.get("content-length")
    return (declared is not None and declared.strip() != "0") or "transfer-encoding" in headers


async def _refuse(send: Any, refusal: Refusal) -> None:
    body = json.dumps(error_body(refusal.status, refusal.message, refusal.code)).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": refusal.status, "headers": headers})
    await send({"type": "http.response.body", "body": body})

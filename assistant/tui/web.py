"""`assistant chat --web`: the same chat app in a browser, served by textual-serve (one app process per page).

The key rule is `assistant serve`'s (assistant/server/auth.py): without API keys only a loopback address is bound;
with keys every request needs one - `?key=KEY` on the page address once (it is then kept in an HttpOnly, SameSite
cookie holding a random session token, never the key), or `Authorization: Bearer KEY`.

Without keys, the perimeter rule is `assistant serve`'s too (assistant/server/perimeter.py): a request must name a
loopback `Host` (no DNS rebinding), and the WebSocket that drives the app (like any state-changing request) must
come from the page's own origin, so another web page the user visits cannot type, approve or attach in the chat.
"""

from __future__ import annotations

import secrets
import shlex
import sys
from collections.abc import Sequence
from typing import Any

from assistant.server.perimeter import check_headers

COOKIE = "assistant_chat_session"


def chat_command(chat_args: Sequence[str]) -> str:
    """The command textual-serve runs for each page: this Python, `assistant chat` with the same options."""
    return shlex.join([sys.executable, "-m", "assistant.cli", "chat", *chat_args])


def make_server(command: str, host: str, port: int, keys: Any, public_url: str | None = None) -> Any:
    """A textual-serve Server; with keys enabled, every route needs a key or a session cookie."""
    from aiohttp import web
    from textual_serve.server import Server


    sessions: set[str] = set()
    servers: list[Any] = []

    @web.middleware
    async def perimeter(request: web.Request, handler: Any) -> web.StreamResponse:
        headers = {k.lower(): v for k, v in request.headers.items()}
        websocket = request.path == "/ws" or headers.get("upgrade", "").lower() == "websocket"
        refusal = check_headers(request.method, headers, keyless=not keys.enabled, websocket=websocket)
        if refusal is not None:
            return web.Response(status=refusal.status, text=f"{refusal.status}: {refusal.message}\n")
        return await handler(request)

    @web.middleware
    async def require_key(request: web.Request, handler: Any) -> web.StreamResponse:
        if public_url is None and request.path == "/" and servers:
            # the page's script and websocket addresses follow the address the browser used (not 0.0.0.0)
            servers[0].public_url = f"{request.scheme}://{request.host}"
        if not keys.enabled or request.cookies.get(COOKIE) in sessions:
            return await handler(request)
        key = request.query.get("key")
        authorization = request.headers.get("Authorization") or (f"Bearer {key}" if key else None)
        if keys.identify(authorization) is None:
            return web.Response(status=401, text="401: this chat needs an API key: open the page as /?key=KEY\n")
        token = secrets.token_urlsafe(32)
        sessions.add(token)
        if key and request.path == "/":  # the key leaves the address bar: the cookie carries the session
            response: web.StreamResponse = web.Response(status=302, headers={"Location": "/"})
        else:
            response = await handler(request)
        response.set_cookie(COOKIE, token, httponly=True, samesite="Strict")
        return response

    class ChatServer(Server):
        async def _make_app(self) -> web.Application:
            app = await super()._make_app()
            app.middlewares.extend((perimeter, require_key))
            return app

    servers.append(ChatServer(command, host=host, port=port, title="Guarded assistant", public_url=public_url))
    return servers[0]

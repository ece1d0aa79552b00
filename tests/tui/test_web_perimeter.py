"""Issue 25: a keyless `assistant chat --web` (the real CLI in a subprocess, as test_web.py runs it) takes its
WebSocket, which types, approves and attaches in the chat, only from its own page: a WebSocket from another origin
(any web page the user visits) or naming a foreign `Host` (DNS rebinding) is refused with 403. The benign twin: the
page's own origin connects and the chat draws its first screen (test_web.py drives the whole page in Chromium)."""

from __future__ import annotations

import re
import time
import urllib.error
import urllib.request

import aiohttp
import pytest
from test_web import ANSI, web_chat  # noqa: F401  (web_chat is a fixture)

REFUSED_ORIGINS = ("http://evil.example", "https://evil.example", "http://127.0.0.1:1", "http://localhost:{port}",
                   "null")


async def handshake_status(ws_url: str, **headers: str) -> int:
    async with aiohttp.ClientSession() as session:
        try:
            async with session.ws_connect(ws_url, headers=headers, timeout=aiohttp.ClientWSTimeout(ws_close=5)):
                return 101
        except aiohttp.WSServerHandshakeError as exc:
            return exc.status


async def test_keyless_web_chat_takes_its_websocket_only_from_its_own_page(web_chat: tuple[str, object]) -> None:  # noqa: F811
    url, _ = web_chat  # http://127.0.0.1:PORT/, the address the CLI prints
    base = url.rstrip("/")
    port = int(re.findall(r":(\d+)", base)[-1])
    ws_url = base.replace("http:", "ws:") + "/ws?width=100&height=30"
    for origin in REFUSED_ORIGINS:
        assert await handshake_status(ws_url, Origin=origin.format(port=port)) == 403, origin
    for host in ("evil.example", f"evil.example:{port}"):  # DNS rebinding: the attacker's name for 127.0.0.1
        assert await handshake_status(ws_url, Host=host, Origin=f"http://{host}") == 403, host
        with pytest.raises(urllib.error.HTTPError) as denied:
            urllib.request.urlopen(urllib.request.Request(url, headers={"Host": host}), timeout=5)
        assert denied.value.code == 403 and b"loopback" in denied.value.read()
    # the benign twin: the page, then its WebSocket from its own origin; the chat draws its first screen
    with urllib.request.urlopen(url, timeout=5) as page:
        assert page.status == 200 and f"ws://127.0.0.1:{port}/ws".encode() in page.read()
    screen = ""
    async with aiohttp.ClientSession() as session, session.ws_connect(ws_url, headers={"Origin": base}) as ws:
        deadline = time.monotonic() + 60
        while "Guarded assistant" not in screen and time.monotonic() < deadline:
            message = await ws.receive(timeout=max(0.1, deadline - time.monotonic()))
            if message.type in (aiohttp.WSMsgType.TEXT, aiohttp.WSMsgType.BINARY):
                data = message.data if isinstance(message.data, str) else message.data.decode("utf-8", "replace")
                screen += ANSI.sub("", data)
            elif message.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED, aiohttp.WSMsgType.ERROR):
                break
    assert "Guarded assistant" in screen, screen[-500:]

"""Concurrent-turn limit (429 with Retry-After) and a client that disconnects: its generation stops, its slot frees."""

from __future__ import annotations

import asyncio
import time

import httpx

from tests.server.conftest import KEY_A, ServerProcess


def active_turns(server: ServerProcess) -> float:
    text = httpx.get(server.base + "/metrics", headers=server.headers()).text
    line = next(x for x in text.splitlines() if x.startswith("assistant_active_turns "))
    return float(line.split()[1])


async def test_busy_then_disconnect_frees_the_slots(small_server: ServerProcess) -> None:
    s = small_server  # two slots, no guards on the answer: it streams as it is generated
    body = {"model": "m", "stream": True, "messages": [{"role": "user", "content": "slow 1"}]}
    async with httpx.AsyncClient(base_url=s.base, headers=s.headers(KEY_A), timeout=60) as client:
        streams = []
        for _ in range(2):  # two slow streamed answers hold both slots
            request = client.build_request("POST", "/v1/chat/completions", json=body)
            response = await client.send(request, stream=True)
            assert response.status_code == 200
            lines = response.aiter_lines()
            while "Slow answer" not in await anext(lines):  # the answer is streaming
                pass
            streams.append((response, lines))  # (a dropped line iterator would close its response)
        busy = await client.post("/v1/chat/completions", json={**body, "stream": False})
        assert busy.status_code == 429
        assert busy.headers["Retry-After"] == "1" and busy.json()["error"]["code"] == "server_busy"
        assert active_turns(s) == 2
        for response, _ in streams:  # the clients go away mid-answer
            await response.aclose()
        deadline = time.monotonic() + 10
        while active_turns(s) and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        assert active_turns(s) == 0  # cancelled long before the 200-word answer (10 s) could finish
        ok = await client.post("/v1/chat/completions", json={**body, "messages": [{"role": "user", "content": "hi"}],
                                                             "stream": False})
        assert ok.status_code == 200

"""Concurrent-turn limit (the admission queue, then 429 with Retry-After) and a client that disconnects: while queued it
leaves the queue; while its turn runs the generation stops and its slot frees."""

from __future__ import annotations

import asyncio
import time

import httpx

from tests.server.conftest import KEY_A, ServerProcess


def active_turns(server: ServerProcess) -> float:
    return gauge(server, "assistant_active_turns")


def gauge(server: ServerProcess, name: str) -> float:
    text = httpx.get(server.base + "/metrics", headers=server.headers()).text
    line = next(x for x in text.splitlines() if x.startswith(name + " "))
    return float(line.split()[1])


async def until_queued(server: ServerProcess, depth: int) -> None:
    deadline = time.monotonic() + 10
    while gauge(server, "assistant_queue_depth") != depth and time.monotonic() < deadline:
        await asyncio.sleep(0.02)
    assert gauge(server, "assistant_queue_depth") == depth


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
        # Both slots taken: the next request waits in the queue (one place, 1 s); past the deadline it is a 429.
        queued = asyncio.ensure_future(client.post("/v1/chat/completions", json={**body, "stream": False}))
        await until_queued(s, 1)
        started = time.monotonic()
        full = await client.post("/v1/chat/completions", json={**body, "stream": False})  # the queue is full
        assert full.status_code == 429 and time.monotonic() - started < 0.5 and "queue_size" in full.text
        busy = await queued
        assert busy.status_code == 429 and "queue_timeout_s" in busy.text
        for response in (full, busy):
            assert int(response.headers["Retry-After"]) >= 1 and int(response.headers["retry-after-ms"]) >= 1000
            assert response.json()["error"]["code"] == "server_busy"
        # A queued client that leaves frees its place at once: the next one queues (and times out) instead of a
        # full-queue 429.
        leaving = asyncio.ensure_future(client.post("/v1/chat/completions", json={**body, "stream": False}))
        await until_queued(s, 1)
        leaving.cancel()
        await until_queued(s, 0)
        started = time.monotonic()
        late = await client.post("/v1/chat/completions", json={**body, "stream": False})
        assert late.status_code == 429 and "queue_timeout_s" in late.text and time.monotonic() - started >= 0.9
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

"""Load: 32 concurrent clients x 3 turns (half OpenAI SDK streaming with their own history, half native threads)
on the tiny guards and a scripted-keyed main model. Every response is well-formed and its own; p50/p95 reported.
Then the server is killed with SIGKILL in the middle of a streamed turn and restarted: threads intact, audit verifies.
"""

from __future__ import annotations

import asyncio
import json
import os
import statistics
import time

import httpx
import openai
from click.testing import CliRunner

from assistant.cli.main import cli
from tests.server.conftest import KEY_A, ServerProcess

CLIENTS = int(os.environ.get("SERVER_LOAD_CLIENTS", "32"))
TURNS = 3


async def sdk_client(server: ServerProcess, i: int, latencies: list[float]) -> None:
    c = openai.AsyncOpenAI(base_url=server.base + "/v1", api_key=KEY_A, max_retries=0, timeout=120)
    history: list[dict] = []
    for t in range(1, TURNS + 1):
        history.append({"role": "user", "content": f"client {i} turn {t}"})
        started = time.perf_counter()
        stream = await c.chat.completions.create(model="m", messages=history, stream=True)  # type: ignore[arg-type]
        chunks = [ch async for ch in stream]
        latencies.append(time.perf_counter() - started)
        assert len({ch.id for ch in chunks}) == 1 and chunks[-1].choices[0].finish_reason == "stop"
        text = "".join(ch.choices[0].delta.content or "" for ch in chunks)
        assert text == f"Answer for client {i} turn {t}.", text
        assert chunks[-1].model_extra["guard"]["notices"] == []  # its own earlier turns were trusted, not re-judged
        history.append({"role": "assistant", "content": text})
    await c.close()


async def thread_client(http: httpx.AsyncClient, i: int, latencies: list[float], threads: dict[int, str]) -> None:
    thread = (await http.post("/v1/threads")).json()["id"]
    threads[i] = thread
    for t in range(1, TURNS + 1):
        started = time.perf_counter()
        events = []
        async with http.stream("POST", f"/v1/threads/{thread}/messages", json={"content": f"client {i} turn {t}"}) as r:
            assert r.status_code == 200
            async for line in r.aiter_lines():
                if line.startswith("data:"):
                    events.append(json.loads(line[5:]))
        latencies.append(time.perf_counter() - started)
        assert events[-1] == {**events[-1], "type": "final", "text": f"Answer for client {i} turn {t}.",
                              "thread_id": thread}
        assert "".join(e["text"] for e in events if e["type"] == "token") == events[-1]["text"]


def expected_history(i: int, turns: int = TURNS) -> list[str]:
    return [x for t in range(1, turns + 1) for x in (f"client {i} turn {t}", f"Answer for client {i} turn {t}.")]


async def histories(http: httpx.AsyncClient, threads: dict[int, str]) -> dict[int, list[str]]:
    out = {}
    for i, thread in threads.items():
        out[i] = [m["content"] for m in (await http.get(f"/v1/threads/{thread}")).json()["messages"]]
    return out


async def test_concurrent_clients_then_sigkill_mid_stream(guarded_server: ServerProcess) -> None:
    # The session's guarded server: killed and restarted here; later tests use it on.
    s = guarded_server
    assert s.slots >= CLIENTS
    latencies: list[float] = []
    threads: dict[int, str] = {}
    async with httpx.AsyncClient(base_url=s.base, headers=s.headers(), timeout=120) as http:
        started = time.perf_counter()
        await asyncio.gather(*(sdk_client(s, i, latencies) if i % 2 == 0 else thread_client(http, i, latencies,
                                                                                            threads)
                               for i in range(CLIENTS)))
        wall = time.perf_counter() - started
        assert len(latencies) == CLIENTS * TURNS
        q = statistics.quantiles(latencies, n=20)
        report = {"clients": CLIENTS, "turns": TURNS, "wall_s": round(wall, 2), "p50_s": round(q[9], 3),
                  "p95_s": round(q[18], 3), "turns_per_s": round(len(latencies) / wall, 1)}
        print(f"\nserver load: {json.dumps(report)}")
        (s.dir / "load-report.json").write_text(json.dumps(report))
        before = await histories(http, threads)
        assert before == {i: expected_history(i) for i in threads}  # no cross-talk between threads

        # SIGKILL while a turn streams on one of the threads
        victim = threads[1]
        async with http.stream("POST", f"/v1/threads/{victim}/messages", json={"content": "slow 7"}) as r:
            async for line in r.aiter_lines():
                if line.startswith("data:") and json.loads(line[5:])["type"] in ("verdict", "token"):
                    s.kill()
                    break
    s.start()
    async with httpx.AsyncClient(base_url=s.base, headers=s.headers(), timeout=120) as http:
        assert await histories(http, threads) == before  # every thread intact, the killed turn left nothing
        r = await http.post(f"/v1/threads/{victim}/messages", json={"content": "client 1 turn 4"})
        assert r.status_code == 200 and "Answer for client 1 turn 4." in r.text  # the thread goes on
    verify = CliRunner().invoke(cli, ["audit", "verify", str(s.audit)])  # the hash chain survived the SIGKILL
    assert verify.exit_code == 0, verify.output

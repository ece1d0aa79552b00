"""A burst against a server with few turn slots: 32 concurrent `AsyncOpenAI` clients (the SDK's default retries) are
all served through the admission queue, within its deadline, and `/metrics` shows the queue's depth and waits."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import openai
import pytest

from tests.server.conftest import ServerProcess

CLIENTS = 32
SLOTS = 2
QUEUE_TIMEOUT_S = 30.0

# No guards (the queue is what is measured), two slots, a queue longer than the burst.
QUEUE_POLICY = """\
version: 1
stages:
  user_input: {{llama_guard: {{enabled: false}}, prompt_guard: {{enabled: false}}}}
  model_output: {{llama_guard: {{enabled: false}}, code_shield: {{enabled: false}}}}
  tool_call: {{llama_guard: {{enabled: false}}}}
  tool_result: {{prompt_guard: {{enabled: false}}}}
  code: {{code_shield: {{enabled: false}}}}
audit: {{path: {audit}}}
server: {{max_concurrent_turns: {slots}, queue_size: 64, queue_timeout_s: {timeout}}}
"""


@pytest.fixture(scope="module")
def queue_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    directory = tmp_path_factory.mktemp("queue")
    policy = QUEUE_POLICY.format(audit=directory / "audit.jsonl", slots=SLOTS, timeout=QUEUE_TIMEOUT_S)
    server = ServerProcess(directory, policy=policy, keys=())
    # Each turn takes a while (a delay before each of its deltas), so 32 at once cannot run in 2 slots together.
    line = {"match": r"burst (\d+)", "completion": "Answer {1}: one two three.<|eot_id|>", "delay_s": 0.03}
    server.script.write_text(json.dumps(line) + "\n", encoding="utf-8")
    yield server.start()
    server.stop()


def metric_samples(server: ServerProcess) -> dict[str, float]:
    text = httpx.get(server.base + "/metrics").text
    return {name: float(value) for name, value in (line.rsplit(" ", 1) for line in text.splitlines()
                                                   if line and not line.startswith("#"))}


async def test_a_burst_of_32_sdk_clients_is_all_served_through_the_queue(queue_server: ServerProcess) -> None:
    s = queue_server

    async def one(n: int) -> tuple[str | None, float]:
        client = openai.AsyncOpenAI(base_url=s.base + "/v1", api_key="unused")  # default retries (2)
        started = time.monotonic()
        try:
            answer = await client.chat.completions.create(
                model="m", messages=[{"role": "user", "content": f"burst {n}"}])
        finally:
            await client.close()
        return answer.choices[0].message.content, time.monotonic() - started

    results = await asyncio.gather(*(one(n) for n in range(CLIENTS)))
    assert [content for content, _ in results] == [f"Answer {n}: one two three." for n in range(CLIENTS)]
    slowest = max(seconds for _, seconds in results)
    assert slowest < QUEUE_TIMEOUT_S
    samples = metric_samples(s)
    assert samples.get('assistant_queue_rejections_total{reason="full"}', 0) == 0  # nobody needed a retry
    assert samples.get('assistant_queue_rejections_total{reason="timeout"}', 0) == 0
    admitted = samples['assistant_queue_wait_seconds_count{outcome="admitted"}']
    assert admitted >= CLIENTS
    waited = samples['assistant_queue_wait_seconds_sum{outcome="admitted"}']
    assert waited > 0  # the burst did queue: 2 slots, 32 turns of ~0.2 s
    assert samples['assistant_queue_wait_seconds_bucket{le="+Inf",outcome="admitted"}'] == admitted
    assert samples["assistant_queue_depth"] == 0
    deadline = time.monotonic() + 10  # a turn stores (deletes) its thread just after answering
    while metric_samples(s)["assistant_active_turns"] and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    assert metric_samples(s)["assistant_active_turns"] == 0
    print(f"\n{CLIENTS} clients, {SLOTS} slots: all served, slowest {slowest:.2f} s, "
          f"mean queue wait {waited / admitted:.2f} s")


async def test_streaming_and_native_threads_queue_too(queue_server: ServerProcess) -> None:
    s = queue_server
    async with httpx.AsyncClient(base_url=s.base, timeout=60) as client:

        async def data(method_path: str, body: dict[str, object]) -> list[dict[str, object]]:
            async with client.stream("POST", method_path, json=body) as response:
                assert response.status_code == 200
                return [json.loads(line[5:]) async for line in response.aiter_lines()
                        if line.startswith("data:") and line != "data: [DONE]"]

        async def streamed(n: int) -> str:
            body = {"model": "m", "stream": True, "messages": [{"role": "user", "content": f"burst {n}"}]}
            chunks = await data("/v1/chat/completions", body)
            return "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks)  # type: ignore[index]

        async def threaded(n: int) -> str:
            thread = (await client.post("/v1/threads", json={})).json()["id"]
            events = await data(f"/v1/threads/{thread}/messages", {"content": f"burst {n}"})
            return str(next(e["text"] for e in events if e["type"] == "final"))

        texts = await asyncio.gather(*(streamed(n) for n in range(8)), *(threaded(n) for n in range(8, 16)))
    assert texts == [f"Answer {n}: one two three." for n in range(16)]
    assert metric_samples(s)["assistant_queue_depth"] == 0


def test_the_policy_keys_are_strict(tmp_path: Path) -> None:
    from pydantic import ValidationError

    from guards.policy.server_config import ServerConfig

    assert ServerConfig().queue_size == 64 and ServerConfig().queue_timeout_s == 30.0
    assert ServerConfig(queue_size=0).queue_size == 0  # no queue: 429 at once, as before
    for bad in ({"queue_size": -1}, {"queue_size": "8"}, {"queue_timeout_s": 0}, {"queue_timeout_s": "5"},
                {"queue_sise": 8}):
        with pytest.raises(ValidationError):
            ServerConfig.model_validate(bad)

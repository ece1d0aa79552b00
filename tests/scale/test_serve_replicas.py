"""Two `assistant serve` processes sharing one PostgreSQL database (a throwaway cluster), as replicas behind a load
balancer would: a thread started on one continues on the other, a pending approval made on one is answered on the
other (the tool runs once), and 16 concurrent clients spread across both lose nothing.

The main model is the stateless keyed script (`scripted-keyed:`), so any replica answers any request the same way;
the guards are off (where state lives is what is under test).
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.scale.pg_cluster import Cluster, free_port

REPO = Path(__file__).resolve().parents[2]
URL_ENV = "ASSISTANT_TEST_DATABASE_URL"
START_TIMEOUT_S = 180
CALL_EMAIL = '<|python_tag|>{"name": "send_email", "parameters": {"to": "bob@example.test", "body": "hi"}}<|eom_id|>'
SCRIPT = [
    {"match": "(?i)my name is (\\w+)", "completion": "Nice to meet you, {1}.<|eot_id|>"},
    {"match": "(?i)email bob", "completion": CALL_EMAIL.replace("{", "{{").replace("}", "}}")},
    {"match": "sent to", "completion": "Sent.<|eot_id|>"},
    {"match": "client (\\d+) turn (\\d+)", "completion": "Answer {1}.{2}.<|eot_id|>", "delay_s": 0.01},
    {"match": ".", "completion": "OK.<|eot_id|>"},
]
POLICY = f"""\
version: 1
stages:
  user_input: {{llama_guard: {{enabled: false}}, prompt_guard: {{enabled: false}}}}
  model_output: {{llama_guard: {{enabled: false}}, code_shield: {{enabled: false}}}}
  tool_result: {{prompt_guard: {{enabled: false}}}}
  code: {{code_shield: {{enabled: false}}}}
tools:
  custom: ["tests.scale.server_tools:send_email"]
  approval_required: [send_email]
audit: {{path: audit.jsonl}}
storage: {{backend: postgres, url_env: {URL_ENV}}}
server: {{max_concurrent_turns: 16}}
"""


class Replicas:
    def __init__(self, urls: list[str], outbox: Path, root: Path) -> None:
        self.urls = urls
        self.outbox = outbox
        self.root = root

    def sent(self) -> list[dict[str, Any]]:
        if not self.outbox.exists():
            return []
        return [json.loads(line) for line in self.outbox.read_text().splitlines()]


@pytest.fixture(scope="module")
def replicas(pg_cluster: Cluster, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Replicas]:
    root = tmp_path_factory.mktemp("replicas")
    url = pg_cluster.create_database(f"serve_{uuid.uuid4().hex[:10]}")
    (root / "policy.yaml").write_text(POLICY, encoding="utf-8")
    (root / "model.jsonl").write_text("".join(json.dumps(line) + "\n" for line in SCRIPT), encoding="utf-8")
    env = {**os.environ, URL_ENV: url, "SCALE_TEST_OUTBOX": str(root / "outbox.jsonl"), "HF_HUB_OFFLINE": "1",
           "PYTHONPATH": str(REPO), "ASSISTANT_HOME": str(root / "home")}
    cli = [sys.executable, "-m", "assistant.cli"]
    migrated = subprocess.run([*cli, "db", "migrate", "--policy", str(root / "policy.yaml")], env=env, cwd=REPO,
                              capture_output=True, text=True, timeout=120)
    assert migrated.returncode == 0, migrated.stderr
    processes: list[subprocess.Popen[bytes]] = []
    urls = []
    try:
        for name in ("a", "b"):
            port = free_port()
            # Each replica has its own local files (data dir, SQLite owners table beside --db); only PostgreSQL
            # is shared.
            replica_env = {**env, "ASSISTANT_HOME": str(root / f"home-{name}"), "ASSISTANT_REPLICA_ID": name}
            log = (root / f"serve-{name}.log").open("wb")
            processes.append(subprocess.Popen(
                [*cli, "serve", "--policy", str(root / "policy.yaml"), "--port", str(port),
                 "--model", f"scripted-keyed:{root / 'model.jsonl'}", "--log-level", "warning"],
                env=replica_env, cwd=REPO, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
            ))
            urls.append(f"http://127.0.0.1:{port}")
        for url_, process, name in zip(urls, processes, ("a", "b"), strict=True):
            wait_ready(url_, process, root / f"serve-{name}.log")
        yield Replicas(urls, root / "outbox.jsonl", root)
    finally:
        for process in processes:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGTERM)
        for process in processes:
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()


def wait_ready(url: str, process: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"assistant serve exited with {process.returncode}:\n{log.read_text()[-3000:]}")
        try:
            response = httpx.get(f"{url}/readyz", timeout=2, trust_env=False)
            if response.status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    pytest.fail(f"assistant serve at {url} not ready in {START_TIMEOUT_S}s:\n{log.read_text()[-3000:]}")


async def events(client: httpx.AsyncClient, url: str, body: dict[str, Any]) -> list[dict[str, Any]]:
    """POST and collect the SSE `data` objects of one turn."""
    found: list[dict[str, Any]] = []
    async with client.stream("POST", url, json=body, timeout=60) as response:
        assert response.status_code == 200, (await response.aread()).decode()
        async for line in response.aiter_lines():
            if line.startswith("data:"):
                data = line[5:].strip()
                if data and data != "[DONE]":
                    found.append(json.loads(data))
    return found


def final_text(found: list[dict[str, Any]]) -> str | None:
    return next((e.get("text") for e in reversed(found) if e.get("type") == "final"), None)


async def new_thread(client: httpx.AsyncClient, base: str) -> str:
    response = await client.post(f"{base}/v1/threads")
    assert response.status_code == 200, response.text
    return str(response.json()["id"])


async def test_thread_started_on_one_replica_continues_on_the_other(replicas: Replicas) -> None:
    a, b = replicas.urls
    async with httpx.AsyncClient(trust_env=False) as client:
        thread = await new_thread(client, a)
        first = await events(client, f"{a}/v1/threads/{thread}/messages", {"content": "My name is Ada."})
        assert final_text(first) == "Nice to meet you, Ada."
        second = await events(client, f"{b}/v1/threads/{thread}/messages", {"content": "And the weather?"})
        assert final_text(second) == "OK."
        info = (await client.get(f"{a}/v1/threads/{thread}")).json()
    assert [(m["role"], m["content"]) for m in info["messages"]] == [
        ("user", "My name is Ada."), ("assistant", "Nice to meet you, Ada."),
        ("user", "And the weather?"), ("assistant", "OK."),
    ]


async def test_pending_approval_made_on_one_replica_is_answered_on_the_other(replicas: Replicas) -> None:
    a, b = replicas.urls
    before = len(replicas.sent())
    async with httpx.AsyncClient(trust_env=False) as client:
        thread = await new_thread(client, a)
        asked = await events(client, f"{a}/v1/threads/{thread}/messages", {"content": "Please email Bob hi"})
        assert asked[-1]["type"] == "approval" and asked[-1]["name"] == "send_email", asked
        assert len(replicas.sent()) == before  # nothing ran yet
        pending = (await client.get(f"{b}/v1/threads/{thread}")).json()["pending_approval"]
        assert pending is not None and pending["call_id"] == asked[-1]["call_id"]
        done = await events(client, f"{b}/v1/threads/{thread}/approval",
                            {"decision": "approve", "call_id": pending["call_id"]})
        assert final_text(done) == "Sent."
        assert (await client.get(f"{a}/v1/threads/{thread}")).json()["pending_approval"] is None
    sent = replicas.sent()[before:]
    assert [(s["to"], s["body"]) for s in sent] == [("bob@example.test", "hi")]  # exactly once


async def test_sixteen_concurrent_clients_across_both_lose_nothing(replicas: Replicas) -> None:
    clients, turns = 16, 3

    async def client_run(client: httpx.AsyncClient, i: int) -> str:
        thread = await new_thread(client, replicas.urls[i % 2])
        for turn in range(turns):  # alternate replicas turn by turn, as a load balancer without stickiness would
            base = replicas.urls[(i + turn) % 2]
            found = await events(client, f"{base}/v1/threads/{thread}/messages", {"content": f"client {i} turn {turn}"})
            assert final_text(found) == f"Answer {i}.{turn}.", found
        return thread

    limits = httpx.Limits(max_connections=64)
    async with httpx.AsyncClient(trust_env=False, limits=limits, timeout=60) as client:
        threads = await asyncio.gather(*(client_run(client, i) for i in range(clients)))
        for i, thread in enumerate(threads):
            info = (await client.get(f"{replicas.urls[(i + 1) % 2]}/v1/threads/{thread}")).json()
            contents = [(m["role"], m["content"]) for m in info["messages"]]
            expected = []
            for turn in range(turns):
                expected += [("user", f"client {i} turn {turn}"), ("assistant", f"Answer {i}.{turn}.")]
            assert contents == expected


def test_each_replica_keeps_its_own_audit_chain(replicas: Replicas) -> None:
    """Runs last: both replicas wrote records (the tests above spread turns over both); each chain is whole."""
    files = [replicas.root / f"audit.{name}.jsonl" for name in ("a", "b")]
    assert all(f.is_file() for f in files) and not (replicas.root / "audit.jsonl").exists()
    for name, path in zip(("a", "b"), files, strict=True):
        assert {json.loads(line)["replica"] for line in path.read_text().splitlines()} == {name}
    verified = subprocess.run([sys.executable, "-m", "assistant.cli", "audit", "verify", *map(str, files)],
                              cwd=REPO, capture_output=True, text=True, timeout=120)
    assert verified.returncode == 0, verified.stdout + verified.stderr

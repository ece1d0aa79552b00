"""Turn latency with threads in SQLite against PostgreSQL (a throwaway local cluster), guards off, scripted model:
what the thread store itself adds to a turn, sequentially and with concurrent clients.

    .venv/bin/python bench/storage.py [--turns 30] [--clients 16]

Prints one JSON object: per store, the median ms of a sequential turn and the wall time of `clients` concurrent
clients x 2 turns. Needs Debian's postgresql (initdb); run from the repository root.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

POLICY = """\
version: 1
stages:
  user_input: {llama_guard: {enabled: false}, prompt_guard: {enabled: false}}
  model_output: {llama_guard: {enabled: false}, code_shield: {enabled: false}}
  tool_result: {prompt_guard: {enabled: false}}
  code: {code_shield: {enabled: false}}
audit: {path: audit.jsonl}
"""


async def measure(folder: Path, storage: str, turns: int, clients: int) -> dict[str, Any]:
    from assistant import storage as store
    from assistant.api import Assistant
    from guards.policy import load_policy

    folder.mkdir(parents=True, exist_ok=True)
    policy = folder / "policy.yaml"
    policy.write_text(POLICY + storage, encoding="utf-8")
    total = turns + clients * 2
    script = folder / "model.jsonl"
    script.write_text("".join(json.dumps({"completion": f"Answer {i}.<|eot_id|>"}) + "\n" for i in range(total)))
    await store.migrate(store.storage_target(load_policy(policy).storage, policy_dir=folder))
    bot = Assistant.from_policy(policy, model=f"scripted:{script}")
    timings = []
    for i in range(turns):
        started = time.perf_counter()
        await bot.arun(f"message {i}", thread=f"seq-{i % 3}")
        timings.append((time.perf_counter() - started) * 1000)

    async def client(i: int) -> None:
        for turn in range(2):
            await bot.arun(f"client {i} turn {turn}", thread=f"client-{i}")

    started = time.perf_counter()
    await asyncio.gather(*(client(i) for i in range(clients)))
    return {"turn_ms_median": round(statistics.median(timings[3:]), 1),
            f"{clients}_clients_x2_turns_s": round(time.perf_counter() - started, 2)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--turns", type=int, default=30)
    parser.add_argument("--clients", type=int, default=16)
    args = parser.parse_args()
    from tests.scale.pg_cluster import start_cluster

    cluster = start_cluster()
    try:
        with tempfile.TemporaryDirectory() as tmp:
            os.environ["ASSISTANT_HOME"] = str(Path(tmp) / "home")
            os.environ["BENCH_DATABASE_URL"] = cluster.create_database("bench")
            results = {
                "sqlite": asyncio.run(measure(Path(tmp) / "sqlite", "", args.turns, args.clients)),
                "postgres": asyncio.run(measure(Path(tmp) / "pg", "storage: {backend: postgres, url_env: "
                                                "BENCH_DATABASE_URL}\n", args.turns, args.clients)),
            }
    finally:
        cluster.stop()
    print(json.dumps(results))


if __name__ == "__main__":
    main()

"""Per-request overhead of `assistant serve` against the same turn run in process (what `assistant run` does).

    python bench/server_overhead.py POLICY.yaml [--n 30]

The main model is `scripted-keyed` (instant, deterministic), so the figures are the server's own cost: HTTP, JSON or
SSE framing, auth, the trust check of the history, the per-request thread in the thread store and its deletion. The
same turn ("client 1 turn 1") is timed warm N times in process with `Assistant.stream` (to its final event, and to
the end of the stream, when the thread is stored) and then through a real
`assistant serve` subprocess (non-stream, stream, native thread); medians are printed, plus one `assistant run`
process for reference (process start and model loading included).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

SCRIPT = [{"match": r"client (\d+) turn (\d+)", "completion": "Answer for client {1} turn {2}.<|eot_id|>"},
          {"match": ".", "completion": "Hello.<|eot_id|>"}]
TEXT = "client 1 turn 1"


def median_ms(values: list[float]) -> float:
    return round(statistics.median(values) * 1000, 1)


async def in_process(policy: Path, model: str, db: Path, n: int) -> tuple[list[float], list[float]]:
    import transformers  # noqa: F401  (its lazy module is not safe to import from warm_up's threads at once)

    from assistant.api import Assistant

    bot = Assistant.from_policy(policy, model=model, db_path=db)
    await bot.warm_up()
    to_final, to_end = [], []
    for i in range(n + 2):
        started = time.perf_counter()
        async for event in bot.stream(TEXT, thread=f"bench-{i}"):
            if event.type == "final":
                final = time.perf_counter()
        if i >= 2:  # the first two warm caches
            to_final.append(final - started)
            to_end.append(time.perf_counter() - started)  # the thread stored
    return to_final, to_end


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def over_http(policy: Path, model: str, home: Path, n: int) -> dict[str, list[float]]:
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    env = {**os.environ, "ASSISTANT_HOME": str(home), "ASSISTANT_API_KEYS": ""}
    proc = subprocess.Popen([sys.executable, "-m", "assistant.cli", "serve", "--policy", str(policy), "--port",
                             str(port), "--model", model, "--log-level", "warning"], env=env)
    try:
        for _ in range(600):
            try:
                if httpx.get(base + "/readyz").status_code == 200:
                    break
            except httpx.TransportError:
                pass
            time.sleep(0.2)
        body = {"model": "m", "messages": [{"role": "user", "content": TEXT}]}
        out: dict[str, list[float]] = {"chat (non-stream)": [], "chat (stream)": [], "thread (SSE)": []}
        with httpx.Client(base_url=base, timeout=60) as http:
            for i in range(n + 2):
                started = time.perf_counter()
                assert http.post("/v1/chat/completions", json=body).status_code == 200
                t1 = time.perf_counter()
                with http.stream("POST", "/v1/chat/completions", json={**body, "stream": True}) as r:
                    for _ in r.iter_lines():
                        pass
                t2 = time.perf_counter()
                thread = http.post("/v1/threads").json()["id"]
                t3 = time.perf_counter()
                with http.stream("POST", f"/v1/threads/{thread}/messages", json={"content": TEXT}) as r:
                    for _ in r.iter_lines():
                        pass
                t4 = time.perf_counter()
                if i >= 2:
                    out["chat (non-stream)"].append(t1 - started)
                    out["chat (stream)"].append(t2 - t1)
                    out["thread (SSE)"].append(t4 - t3)
        return out
    finally:
        proc.terminate()
        proc.wait(15)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("policy", type=Path)
    parser.add_argument("--n", type=int, default=30)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        script = Path(tmp) / "model.jsonl"
        script.write_text("".join(json.dumps(line) + "\n" for line in SCRIPT), encoding="utf-8")
        model = f"scripted-keyed:{script}"
        os.environ["ASSISTANT_HOME"] = str(Path(tmp) / "home")
        to_final, to_end = asyncio.run(in_process(args.policy, model, Path(tmp) / "inproc.sqlite", args.n))
        http = over_http(args.policy, model, Path(tmp) / "home-serve", args.n)
        started = time.perf_counter()
        run = subprocess.run([sys.executable, "-m", "assistant.cli", "run", TEXT, "--policy", str(args.policy),
                              "--model", model, "--json"], capture_output=True)
        cli_s = time.perf_counter() - started
    # Chat Completions answers at the final event; a native-threads stream ends once the thread is stored.
    report = {"in-process to final event (Assistant.stream, as assistant run)": median_ms(to_final),
              "in-process to end of stream (thread stored)": median_ms(to_end)}
    for name, values in http.items():
        base = to_end if name.startswith("thread") else to_final
        report[name] = median_ms(values)
        report[name + " overhead"] = round(median_ms(values) - median_ms(base), 1)
    report["assistant run process (start + load + turn)"] = round(cli_s * 1000, 1)
    report["assistant run exit code"] = run.returncode
    print(json.dumps({"median_ms": report, "n": args.n}, indent=2))


if __name__ == "__main__":
    main()

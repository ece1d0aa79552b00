"""Many users through the server: `assistant serve` guarded against the same server with its guards off.

    python bench/serve_load.py [--json] [--clients 8,32] [--chart docs/images/bench_load.png] [--size serve|bench]

Two real `assistant serve` processes (bench/serve_forced.py: the real server with the benchmark's teacher-forced
tiny Llama as the main model and the scenario's `fetch_page` as a policy tool, so tool calls run inside the turn),
one on the benchmark's guarded policy (guards in processes of their own, one torch thread each), one on the same
policy with every guard stage off. For each client count, each server is loaded in turn (rotating order) by that
many concurrent `AsyncOpenAI` clients, streaming, each a conversation of the scenario's three answered turns (two
tools, one tool, none) with its own history. Per server and count: turns per second, p50/p95 time to the first
checked token (the first `delta.content`: the server streams only checked text) and turn time, and CPU per turn of
the server process and its children (the guard processes), read from /proc.

`--modes unguarded,guarded,batched` adds a third server: the guarded policy with Llama Guard's waiting checks
batched (`llama_guard.batch_checks`, `--batch-checks` / `--batch-wait-ms`), compared with the guarded one:
`serveN_batched_throughput_vs_guarded`, `serveN_batched_p95_turn_vs_guarded`, `serveN_batched_cpu_per_turn_vs_guarded`.

`--json` keys, per count N (8, 32): `serveN_throughput_vs_unguarded`, `serveN_throughput_vs_cpu_bound` (guarded
turns/s over what CPU alone allows: unguarded turns/s x unguarded CPU per turn / guarded CPU per turn),
`serveN_p95_turn_vs_unguarded`, `serveN_p95_ttft_vs_unguarded`, `serveN_guard_cpu_share` (the share of the guarded
server's CPU per turn that guarding adds); `guard_cpu_share` is the one at 32 clients.
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
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from bench.scenario import Scenario, Sizes, build_scenario  # noqa: E402  (after the path is set)

DEFAULT_MODELS = REPO / ".cache" / "tiny-models"
# guarded: Llama Guard's checks one at a time (batch_checks: 1, pinned); batched: up to --batch-checks together (the
# policy default, 8)
MODES = ("unguarded", "guarded", "batched")
SIZES = {  # words per tool result and per answer
    "serve": Sizes(tool_words=(300, 200, 400), answer_words=60),  # the default: 96 turns at 32 clients in minutes
    # on two shared cores
    "bench": Sizes(),  # bench/turn.py's scenario
    "tiny": Sizes.tiny(),  # tests
}

STAGES = """\
  user_input: {{llama_guard: {{enabled: {g}}}, prompt_guard: {{enabled: {g}, score: jailbreak}}}}
  model_output: {{llama_guard: {{enabled: {g}}}, code_shield: {{enabled: false}}}}
  tool_call: {{llama_guard: {{enabled: false}}}}
  tool_result: {{prompt_guard: {{enabled: {g}, score: injection}}}}
  code: {{code_shield: {{enabled: false}}}}
"""

POLICY = """\
version: 1
models:
  main: {{source: {main}, device: cpu, dtype: float32, context_window: 16384, max_new_tokens: 2048}}
  llama_guard: {{source: {llama_guard}, variant: 8b, device: cpu, dtype: float32, process: true, threads: 1}}
  prompt_guard: {{source: {prompt_guard}, device: cpu, process: true, threads: 1}}
llama_guard: {{timeout_s: 600, cached_conversations: {cached}, batch_checks: {batch}, batch_wait_ms: {wait}}}
prompt_guard: {{timeout_s: 600, stride_tokens: {stride}}}
stages:
{stages}audit: {{path: {audit}, texts: hash}}
tools:
  untrusted_content: allow
  custom: ["bench.serve_forced:fetch_page"]
agent:
  max_steps: 8
  streaming_moderation: {{enabled: {g}, chunk_chars: {chunk}, first_chunk_chars: {first}}}
server: {{max_concurrent_turns: {slots}, queue_size: 256, queue_timeout_s: 900, turn_timeout_s: 900}}
"""


def policy_text(mode: str, dirs: Any, sizes: Sizes, audit: Path, slots: int, batch: tuple[int, float] = (8, 0.0)
                ) -> str:
    g = "false" if mode == "unguarded" else "true"
    checks, wait_ms = batch if mode == "batched" else (1, 0.0)
    return POLICY.format(
        batch=checks, wait=wait_ms,
        main=dirs.main, llama_guard=dirs.llama_guard, prompt_guard=dirs.prompt_guard, cached=max(8, slots),
        stride=sizes.prompt_guard_stride, stages=STAGES.format(g=g), audit=audit, chunk=sizes.chunk_chars,
        first=sizes.first_chunk_chars, g=g, slots=slots,
    )


def scenario_json(scenario: Scenario) -> dict[str, Any]:
    return {"turns": [[t.user, list(t.completions)] for t in scenario.turns], "pages": scenario.pages}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Server:
    mode: str
    proc: subprocess.Popen[bytes]
    base: str
    log: Path

    def cpu_s(self) -> float:
        """CPU seconds of the server process and of its live children (the guard processes)."""
        import psutil

        total = 0.0
        try:
            root = psutil.Process(self.proc.pid)
            for p in [root, *root.children(recursive=True)]:
                try:
                    times = p.cpu_times()
                    total += times.user + times.system
                except psutil.NoSuchProcess:
                    pass
        except psutil.NoSuchProcess:
            pass
        return total

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)


def start_server(mode: str, policy: Path, scenario_file: Path, dirs: Any, workdir: Path, threads: int) -> Server:
    port = free_port()
    log = workdir / f"{mode}.log"
    env = {**os.environ, "ASSISTANT_HOME": str(workdir / f"home-{mode}"), "ASSISTANT_API_KEYS": ""}
    command = [sys.executable, str(REPO / "bench" / "serve_forced.py"), str(scenario_file), "--threads", str(threads),
               "--", "--policy", str(policy), "--port", str(port), "--model", f"forced:{dirs.main}",
               "--db", str(workdir / f"{mode}.sqlite"), "--log-level", "warning"]
    with log.open("wb") as out:
        proc = subprocess.Popen(command, env=env, stdout=out, stderr=subprocess.STDOUT, cwd=REPO)
    return Server(mode, proc, f"http://127.0.0.1:{port}", log)


def wait_ready(server: Server, timeout_s: float = 300) -> None:
    import httpx

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if server.proc.poll() is not None:
            raise RuntimeError(f"the {server.mode} server exited: {server.log.read_text()[-2000:]}")
        try:
            r = httpx.get(server.base + "/readyz", timeout=5)
            if r.status_code == 200:
                return
            if r.status_code == 503 and "degraded" in r.text:
                raise RuntimeError(f"the {server.mode} server is degraded: {r.text}")
        except httpx.TransportError:
            pass
        time.sleep(0.3)
    raise RuntimeError(f"the {server.mode} server was not ready in {timeout_s} s")


@dataclass
class TurnResult:
    turn: int
    ttft_s: float | None  # first content delta (checked text)
    turn_s: float
    finish: str


async def conversation(client: Any, scenario: Scenario, turns: slice) -> list[TurnResult]:
    history: list[dict[str, str]] = []
    results = []
    for index, turn in list(enumerate(scenario.turns))[turns]:
        messages = [*history, {"role": "user", "content": turn.user}]
        started = time.perf_counter()
        ttft, parts, finish = None, [], "none"
        stream = await client.chat.completions.create(model="guarded-assistant", messages=messages, stream=True)
        async for chunk in stream:
            for choice in chunk.choices:
                if choice.delta.content:
                    if ttft is None:
                        ttft = time.perf_counter() - started
                    parts.append(choice.delta.content)
                if choice.finish_reason:
                    finish = choice.finish_reason
        results.append(TurnResult(index, ttft, time.perf_counter() - started, finish))
        history = [*messages, {"role": "assistant", "content": "".join(parts)}]
    return results


@dataclass
class LoadRun:
    mode: str
    clients: int
    wall_s: float
    cpu_s: float
    turns: list[TurnResult] = field(default_factory=list)

    @property
    def turns_per_s(self) -> float:
        return len(self.turns) / self.wall_s

    @property
    def cpu_per_turn(self) -> float:
        return self.cpu_s / len(self.turns)

    def figures(self) -> dict[str, Any]:
        ttft = [t.ttft_s for t in self.turns if t.ttft_s is not None]
        turn = [t.turn_s for t in self.turns]
        return {
            "mode": self.mode, "clients": self.clients, "turns": len(self.turns), "wall_s": round(self.wall_s, 3),
            "turns_per_s": round(self.turns_per_s, 4), "cpu_s": round(self.cpu_s, 2),
            "cpu_per_turn_s": round(self.cpu_per_turn, 4),
            "ttft_p50_s": quantile(ttft, 0.5), "ttft_p95_s": quantile(ttft, 0.95),
            "turn_p50_s": quantile(turn, 0.5), "turn_p95_s": quantile(turn, 0.95),
            "finish": {k: sum(t.finish == k for t in self.turns) for k in sorted({t.finish for t in self.turns})},
        }


def quantile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    if len(values) == 1:
        return round(values[0], 4)
    return round(statistics.quantiles(values, n=100, method="inclusive")[round(q * 100) - 1], 4)


async def load(server: Server, scenario: Scenario, clients: int, turns: slice) -> LoadRun:
    from openai import AsyncOpenAI

    async with AsyncOpenAI(base_url=server.base + "/v1", api_key="unused", timeout=1800, max_retries=0) as client:
        cpu = server.cpu_s()
        started = time.perf_counter()
        results = await asyncio.gather(*(conversation(client, scenario, turns) for _ in range(clients)))
        wall = time.perf_counter() - started
        cpu = server.cpu_s() - cpu
    return LoadRun(server.mode, clients, wall, cpu, [r for rs in results for r in rs])


def ratios(runs: list[LoadRun]) -> dict[str, Any]:
    """The --json keys, per client count (the runs of one count: one per mode); with the batched mode, its figures
    over the guarded server's (`serveN_batched_*_vs_guarded`)."""
    out: dict[str, Any] = {}
    for n in sorted({r.clients for r in runs}):
        by = {r.mode: r for r in runs if r.clients == n}
        if "batched" in by and "guarded" in by:
            b, g = by["batched"].figures(), by["guarded"].figures()
            out[f"serve{n}_batched_throughput_vs_guarded"] = round(b["turns_per_s"] / g["turns_per_s"], 3)
            out[f"serve{n}_batched_p95_turn_vs_guarded"] = round(b["turn_p95_s"] / g["turn_p95_s"], 3)
            out[f"serve{n}_batched_p50_turn_vs_guarded"] = round(b["turn_p50_s"] / g["turn_p50_s"], 3)
            out[f"serve{n}_batched_cpu_per_turn_vs_guarded"] = round(b["cpu_per_turn_s"] / g["cpu_per_turn_s"], 3)
            if "unguarded" in by:
                u = by["unguarded"].figures()
                out[f"serve{n}_batched_throughput_vs_unguarded"] = round(b["turns_per_s"] / u["turns_per_s"], 3)
                out[f"serve{n}_batched_p95_turn_vs_unguarded"] = round(b["turn_p95_s"] / u["turn_p95_s"], 3)
        if "unguarded" not in by or "guarded" not in by:
            continue
        u, g = by["unguarded"].figures(), by["guarded"].figures()
        bound = u["turns_per_s"] * u["cpu_per_turn_s"] / g["cpu_per_turn_s"]
        out[f"serve{n}_throughput_vs_unguarded"] = round(g["turns_per_s"] / u["turns_per_s"], 3)
        out[f"serve{n}_throughput_vs_cpu_bound"] = round(g["turns_per_s"] / bound, 3)
        out[f"serve{n}_p95_turn_vs_unguarded"] = round(g["turn_p95_s"] / u["turn_p95_s"], 3)
        out[f"serve{n}_p50_turn_vs_unguarded"] = round(g["turn_p50_s"] / u["turn_p50_s"], 3)
        if g["ttft_p95_s"] and u["ttft_p95_s"]:
            out[f"serve{n}_p95_ttft_vs_unguarded"] = round(g["ttft_p95_s"] / u["ttft_p95_s"], 3)
            out[f"serve{n}_p50_ttft_vs_unguarded"] = round(g["ttft_p50_s"] / u["ttft_p50_s"], 3)
        out[f"serve{n}_cpu_per_turn_vs_unguarded"] = round(g["cpu_per_turn_s"] / u["cpu_per_turn_s"], 3)
        out[f"serve{n}_guard_cpu_share"] = round(1 - u["cpu_per_turn_s"] / g["cpu_per_turn_s"], 3)
    if "serve32_guard_cpu_share" in out:
        out["guard_cpu_share"] = out["serve32_guard_cpu_share"]
    return out


def machine() -> dict[str, Any]:
    cpu = "?"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break
    return {"cpu": cpu, "cores": os.cpu_count(), "load_average": [round(x, 2) for x in os.getloadavg()]}


def run(args: argparse.Namespace) -> dict[str, Any]:
    from bench.harness import tiny_model_dirs

    sizes = SIZES[args.size]
    scenario = build_scenario(sizes)
    counts = [int(c) for c in args.clients.split(",")]
    start, stop = (int(x) for x in args.turns.split(":"))
    turns = slice(start, stop)
    dirs = tiny_model_dirs(args.models)
    modes = [m for m in args.modes.split(",") if m]
    if unknown := set(modes) - set(MODES):
        raise SystemExit(f"unknown modes {sorted(unknown)}; known: {', '.join(MODES)}")
    before = machine()
    began = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="serve-load-") as tmp:
        workdir = Path(tmp)
        scenario_file = workdir / "scenario.json"
        scenario_file.write_text(json.dumps(scenario_json(scenario)), encoding="utf-8")
        servers: dict[str, Server] = {}
        try:
            for mode in modes:
                policy = workdir / f"{mode}.yaml"
                policy.write_text(policy_text(mode, dirs, sizes, workdir / f"{mode}-audit.jsonl", max(counts),
                                              (args.batch_checks, args.batch_wait_ms)), encoding="utf-8")
                servers[mode] = start_server(mode, policy, scenario_file, dirs, workdir, args.threads)
            for server in servers.values():
                wait_ready(server)
                asyncio.run(load(server, scenario, 2, slice(1, 2)))  # warm-up: a tool turn touches every path
            runs: list[LoadRun] = []
            for i, n in enumerate(counts):
                for repeat in range(args.repeats):
                    shift = (i + repeat) % len(modes)  # rotated: no mode always first
                    order = modes[shift:] + modes[:shift]
                    for mode in order:
                        runs.append(asyncio.run(load(servers[mode], scenario, n, turns)))
        finally:
            for server in servers.values():
                server.stop()
    summary: dict[str, Any] = {
        **ratios(runs), "runs": [r.figures() for r in runs], "size": args.size, "sizes": asdict(sizes),
        "turns_per_client": stop - start, "threads": args.threads, "modes": modes,
        "batching": {"batch_checks": args.batch_checks, "batch_wait_ms": args.batch_wait_ms}, "machine_before": before,
        "machine_after": machine(), "elapsed_s": round(time.perf_counter() - began, 1),
    }
    if args.chart:
        from bench.load_chart import write_load_chart

        summary["chart"] = str(write_load_chart(summary, args.chart))
    return summary


def print_table(summary: dict[str, Any]) -> None:
    print(f"{'mode':10} {'clients':>7} {'turns/s':>8} {'CPU/turn':>9} {'ttft p50':>9} {'ttft p95':>9} "
          f"{'turn p50':>9} {'turn p95':>9}")
    for r in summary["runs"]:
        print(f"{r['mode']:10} {r['clients']:7d} {r['turns_per_s']:8.3f} {r['cpu_per_turn_s']:9.3f} "
              f"{r['ttft_p50_s'] or 0:9.3f} {r['ttft_p95_s'] or 0:9.3f} {r['turn_p50_s']:9.3f} {r['turn_p95_s']:9.3f}")
    for key, value in summary.items():
        if key.startswith(("serve", "guard_cpu")):
            print(f"{key}: {value}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--clients", default="8,32", help="concurrent clients, comma-separated")
    parser.add_argument("--turns", default="0:3", help="the scenario's turns each client runs (a slice)")
    parser.add_argument("--size", choices=sorted(SIZES), default="serve")
    parser.add_argument("--repeats", type=int, default=1, help="loads per client count and mode")
    parser.add_argument("--threads", type=int, default=1, help="torch threads per operation of each server")
    parser.add_argument("--models", type=Path, default=DEFAULT_MODELS, help="the tiny models' cache")
    parser.add_argument("--chart", type=Path, default=None, help="write the load chart (PNG) here")
    parser.add_argument("--modes", default="unguarded,guarded", help=f"servers, comma-separated, of {MODES}")
    parser.add_argument("--batch-checks", type=int, default=8, help="the batched server's llama_guard.batch_checks")
    parser.add_argument("--batch-wait-ms", type=float, default=0.0, help="its llama_guard.batch_wait_ms")
    args = parser.parse_args(argv)
    summary = run(args)
    if args.json:
        print(json.dumps(summary, indent=2))
    else:
        print_table(summary)
    return 0


if __name__ == "__main__":
    sys.exit(main())

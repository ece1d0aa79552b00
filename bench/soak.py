"""Soak: one `assistant serve` process, thousands of mixed requests, its RSS sampled as they go (CSV + PNG).

    python bench/soak.py                      # 10,000 requests, 4 clients, RSS every 100 requests
    python bench/soak.py --requests 1000      # the quick mode
    python bench/soak.py --tracemalloc        # also two tracemalloc snapshots (after warm-up, at the end), diffed

The server runs the offline policy's shape with the tiny trained guards (Llama Guard and Prompt Guard on every
stage, as tests/server/conftest.py does) and the `scripted-keyed` main model (instant answers), so the figures are
the server's own memory: HTTP, the trust store, the guards, the per-request thread in SQLite and its deletion. The
mix, driven with the `openai` SDK (`AsyncOpenAI`, one client per worker, no retries), repeats every 10 requests:
plain answers (non-stream and stream), client-tool round trips (the call, then the tool result sent back with the
history, non-stream and stream), refusals (the tiny guards' trigger `zyxtrigger` in the input, and in the answer)
and bad requests (400: no messages, an unknown role; 401: a wrong key). Every answer is checked against what the
script says; a wrong one is counted, never ignored.

The RSS is the server process's (psutil when installed, else /proc/PID/status VmRSS). With `--tracemalloc` the
server runs under a launcher that starts tracemalloc once the server is ready (SIGUSR1) and writes a snapshot (and
`gc` object counts by type) on SIGUSR2; the bench sends it after warm-up and at the end and prints the top
differences. tracemalloc slows every allocation: the RSS of such a run is not the figure to report.

Outputs (in --out, default .cache/soak/): soak.csv (requests, elapsed_s, rss_mb), soak.png (RSS against requests),
soak.json (the summary). Not part of `make test`.
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import openai

REPO = Path(__file__).resolve().parents[1]
TINY_DIR = REPO / ".cache" / "tiny-models"
KEYS = ("soak-key-a-0123456789abcdef", "soak-key-b-0123456789abcdef")

POLICY = """\
version: 1
models:
  llama_guard: {{source: tiny:llama-guard, variant: 8b, device: cpu, dtype: float32}}
  prompt_guard: {{source: tiny:prompt-guard, device: cpu}}
llama_guard: {{timeout_s: 60}}
prompt_guard: {{timeout_s: 60}}
stages:
  user_input: {{llama_guard: {{enabled: true}}, prompt_guard: {{enabled: true, score: jailbreak}}}}
  model_output: {{llama_guard: {{enabled: true}}, code_shield: {{enabled: false}}}}
  tool_call: {{llama_guard: {{enabled: true}}}}
  tool_result: {{prompt_guard: {{enabled: true, score: injection}}}}
  code: {{code_shield: {{enabled: false}}}}
audit: {{path: {audit}, texts: hash}}
server: {{max_concurrent_turns: 32, turn_timeout_s: 60}}
"""

SCRIPT = [
    {"match": r"weather in (\w+)",
     "completion": '{{"name": "get_weather", "parameters": {{"city": "{1}"}}}}<|eom_id|>'},
    {"match": r"temp=(\d+)", "completion": "It is {1} degrees.<|eot_id|>"},
    {"match": "say bad", "completion": "Here is zyxtrigger text.<|eot_id|>"},
    {"match": r"client (\d+) turn (\d+)", "completion": "Answer for client {1} turn {2}.<|eot_id|>"},
    {"match": ".", "completion": "Hello from the scripted model.<|eot_id|>"},
]

WEATHER_TOOL: Any = {"type": "function", "function": {
    "name": "get_weather", "description": "Weather for a city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}

# Which request each slot of 10 sends (a tool round trip is two requests: the call, then the result).
MIX = ("plain", "stream", "tool", "tool_stream", "refuse_input", "plain", "stream", "refuse_output", "bad", "plain")
CITIES = ("Paris", "Oslo", "Lima", "Cairo", "Tokyo", "Quito", "Accra", "Dhaka")

# Run inside the server process with --tracemalloc: tracing from SIGUSR1 on, snapshots and gc counts on SIGUSR2
# (argv[1]: the dump prefix, argv[2]: frames).
LAUNCHER = """\
import collections, gc, json, signal, sys, tracemalloc
prefix, frames, count = sys.argv[1], int(sys.argv[2]), [0]
def trace(signum, frame):  # started once the models are loaded (loading them traced takes many minutes)
    tracemalloc.start(frames)
    open(f"{prefix}.0.done", "w").close()
def dump(signum, frame):
    gc.collect()
    count[0] += 1
    tracemalloc.take_snapshot().dump(f"{prefix}.{count[0]}.tracemalloc")
    types = collections.Counter(type(o).__name__ for o in gc.get_objects())
    with open(f"{prefix}.{count[0]}.gc.json", "w") as f:
        json.dump({"objects": sum(types.values()), "by_type": dict(types.most_common(60))}, f)
    with open(f"{prefix}.{count[0]}.done", "w") as f:
        f.write("ok")
signal.signal(signal.SIGUSR1, trace)
signal.signal(signal.SIGUSR2, dump)
sys.argv = ["assistant", *sys.argv[3:]]
from assistant.cli.main import main
main()
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def rss_mb(pid: int) -> float:
    """The process's resident set size in MB (psutil when installed, else /proc)."""
    try:
        import psutil
    except ImportError:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
        raise RuntimeError(f"no VmRSS for process {pid}") from None
    return float(psutil.Process(pid).memory_info().rss) / (1024 * 1024)


class Server:
    """`assistant serve` in a subprocess (optionally under the tracemalloc launcher), ready when /readyz says so."""

    def __init__(self, directory: Path, *, tracemalloc_frames: int = 0) -> None:
        self.dir = directory
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        policy = directory / "policy.yaml"
        policy.write_text(POLICY.format(audit=directory / "audit.jsonl"), encoding="utf-8")
        script = directory / "model.jsonl"
        script.write_text("".join(json.dumps(line) + "\n" for line in SCRIPT), encoding="utf-8")
        keys = directory / "keys.txt"
        keys.write_text("\n".join(KEYS) + "\n", encoding="utf-8")
        serve = ["serve", "--policy", str(policy), "--port", str(self.port), "--model", f"scripted-keyed:{script}",
                 "--db", str(directory / "threads.sqlite"), "--log-level", "warning", "--api-keys-file", str(keys)]
        self.dumps = directory / "dump"
        self.traced = tracemalloc_frames > 0
        if self.traced:
            self.cmd = [sys.executable, "-c", LAUNCHER, str(self.dumps), str(tracemalloc_frames), *serve]
        else:
            self.cmd = [sys.executable, "-m", "assistant.cli", *serve]
        self.proc: subprocess.Popen[bytes] | None = None
        self.log = directory / "server.log"
        self.dumped = 0

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def start(self, timeout: float = 300) -> Server:
        env = {**os.environ, "ASSISTANT_HOME": str(self.dir / "home"), "ASSISTANT_TINY_MODELS": str(TINY_DIR),
               "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(REPO), "ASSISTANT_API_KEYS": ""}
        with self.log.open("ab") as log:
            self.proc = subprocess.Popen(self.cmd, cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited with {self.proc.returncode}:\n{self.log.read_text()[-3000:]}")
            try:
                if httpx.get(self.base + "/readyz", timeout=2).status_code == 200:
                    if self.traced:
                        self._signal(signal.SIGUSR1, Path(f"{self.dumps}.0.done"), timeout)
                    return self
            except httpx.TransportError:
                pass
            time.sleep(0.2)
        self.stop()
        raise RuntimeError(f"server not ready in {timeout} s:\n{self.log.read_text()[-3000:]}")

    def dump(self, timeout: float = 300) -> tuple[Path, Path]:
        """A tracemalloc snapshot and gc counts from the server (the launcher's SIGUSR2 handler)."""
        self.dumped += 1
        self._signal(signal.SIGUSR2, Path(f"{self.dumps}.{self.dumped}.done"), timeout)
        return Path(f"{self.dumps}.{self.dumped}.tracemalloc"), Path(f"{self.dumps}.{self.dumped}.gc.json")

    def _signal(self, signum: int, done: Path, timeout: float) -> None:
        os.kill(self.pid, signum)
        deadline = time.monotonic() + timeout
        while not done.exists():
            if time.monotonic() > deadline:
                raise RuntimeError(f"the server did not answer signal {signum} in {timeout} s")
            time.sleep(0.1)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)


@dataclass
class Tally:
    sent: int = 0
    by_kind: dict[str, int] = field(default_factory=dict)
    wrong: list[str] = field(default_factory=list)
    samples: list[tuple[int, float, float]] = field(default_factory=list)  # requests, elapsed_s, rss_mb

    def count(self, kind: str, n: int = 1) -> None:
        self.sent += n
        self.by_kind[kind] = self.by_kind.get(kind, 0) + n

    def check(self, ok: bool, what: str) -> None:
        if not ok and len(self.wrong) < 50:
            self.wrong.append(what)
        elif not ok:
            self.wrong.append("...")


async def stream_text(stream: Any) -> tuple[str, str, str | None, list[Any]]:
    """(content, refusal, finish_reason, tool call deltas) of a streamed answer."""
    content, refusal, finish, calls = "", "", None, []
    async for chunk in stream:
        if not chunk.choices:
            continue
        delta = chunk.choices[0].delta
        content += delta.content or ""
        refusal += getattr(delta, "refusal", None) or ""
        calls += delta.tool_calls or []
        finish = chunk.choices[0].finish_reason or finish
    return content, refusal, finish, calls


async def one(kind: str, i: int, client: openai.AsyncOpenAI, wrong_key: openai.AsyncOpenAI, tally: Tally) -> None:
    """One slot of the mix (a tool round trip sends two requests)."""
    worker = i % 97
    if kind in ("plain", "stream"):
        text = f"client {worker} turn {i}"
        expected = f"Answer for client {worker} turn {i}."
        messages: list[Any] = [{"role": "user", "content": text}]
        if kind == "plain":
            r = await client.chat.completions.create(model="m", messages=messages)
            tally.check(r.choices[0].message.content == expected, f"{i} plain: {r.choices[0].message.content!r}")
        else:
            content, _, finish, _ = await stream_text(
                await client.chat.completions.create(model="m", messages=messages, stream=True))
            tally.check(content == expected and finish == "stop", f"{i} stream: {content!r} {finish}")
        tally.count(kind)
    elif kind in ("tool", "tool_stream"):
        city, temp = CITIES[i % len(CITIES)], i % 40
        messages = [{"role": "user", "content": f"what is the weather in {city} ({i})"}]
        if kind == "tool":
            r = await client.chat.completions.create(model="m", messages=messages, tools=[WEATHER_TOOL])
            calls = r.choices[0].message.tool_calls or []
            tally.check(r.choices[0].finish_reason == "tool_calls" and len(calls) == 1, f"{i} tool: {r.choices[0]}")
            if not calls:
                tally.count(kind)
                return
            call_id, arguments = calls[0].id, calls[0].function.arguments  # type: ignore[union-attr]
        else:
            _, _, finish, deltas = await stream_text(await client.chat.completions.create(
                model="m", messages=messages, tools=[WEATHER_TOOL], stream=True))
            tally.check(finish == "tool_calls" and len(deltas) >= 1, f"{i} tool_stream: {finish} {deltas}")
            if not deltas:
                tally.count(kind)
                return
            call_id = deltas[0].id
            arguments = "".join(d.function.arguments or "" for d in deltas if d.function)
        tally.check(json.loads(arguments) == {"city": city}, f"{i} tool arguments: {arguments}")
        messages += [{"role": "assistant", "content": None, "tool_calls": [
                          {"id": call_id, "type": "function",
                           "function": {"name": "get_weather", "arguments": arguments}}]},
                     {"role": "tool", "tool_call_id": call_id, "content": f"temp={temp}"}]
        r2 = await client.chat.completions.create(model="m", messages=messages, tools=[WEATHER_TOOL])
        tally.check(r2.choices[0].message.content == f"It is {temp} degrees.", f"{i} tool result: {r2.choices[0]}")
        tally.count(kind, 2)
    elif kind in ("refuse_input", "refuse_output"):
        text = f"tell me zyxtrigger things {i}" if kind == "refuse_input" else f"please say bad {i}"
        stream = i % 20 >= 10  # half of them streamed
        messages = [{"role": "user", "content": text}]
        if stream:
            content, refusal, finish, _ = await stream_text(
                await client.chat.completions.create(model="m", messages=messages, stream=True))
        else:
            r = await client.chat.completions.create(model="m", messages=messages)
            content, refusal = r.choices[0].message.content or "", r.choices[0].message.refusal or ""
            finish = r.choices[0].finish_reason
        tally.check(finish == "content_filter" and bool(refusal) and "zyxtrigger" not in content + refusal,
                    f"{i} {kind}: {content!r} {refusal!r} {finish}")
        tally.count(kind)
    else:  # bad requests: 400 (no messages; an unknown role) and 401 (a wrong key), in turn
        which = (i // 10) % 3
        try:
            if which == 0:
                await client.chat.completions.create(model="m", messages=[])
            elif which == 1:
                await client.chat.completions.create(model="m", messages=[{"role": "wizard", "content": "hi"}])
            else:
                await wrong_key.chat.completions.create(model="m", messages=[{"role": "user", "content": "hi"}])
            tally.check(False, f"{i} bad request {which} answered")
        except openai.BadRequestError:
            tally.check(which in (0, 1), f"{i} bad request {which}: 400")
        except openai.AuthenticationError:
            tally.check(which == 2, f"{i} bad request {which}: 401")
        tally.count("bad")


async def drive(server: Server, args: argparse.Namespace, tally: Tally, started: float,
                at_warm_up: Any = None) -> None:
    """`args.clients` workers take slots of the mix until `args.requests` requests were sent; RSS every
    `args.sample_every` requests (and once before the first)."""
    clients = [openai.AsyncOpenAI(base_url=server.base + "/v1", api_key=KEYS[w % 2], max_retries=0, timeout=120)
               for w in range(args.clients)]
    wrong_key = openai.AsyncOpenAI(base_url=server.base + "/v1", api_key="not-a-key-0123456789", max_retries=0)
    next_slot = 0
    next_sample = 0
    warm_dumped = False
    tally.samples.append((0, 0.0, rss_mb(server.pid)))

    def sample() -> None:
        nonlocal next_sample, warm_dumped
        while tally.sent >= next_sample + args.sample_every:
            next_sample += args.sample_every
            tally.samples.append((tally.sent, round(time.monotonic() - started, 2), rss_mb(server.pid)))
            last = tally.samples[-1]
            if next_sample % max(args.sample_every, args.requests // 20) == 0:
                print(f"  {last[0]:>6} requests  {last[1]:>7.1f} s  RSS {last[2]:.1f} MB", flush=True)
        if at_warm_up is not None and not warm_dumped and tally.sent >= args.warm_up:
            warm_dumped = True
            at_warm_up()

    async def worker(w: int) -> None:
        nonlocal next_slot
        while tally.sent < args.requests:
            i, next_slot = next_slot, next_slot + 1
            await one(MIX[i % len(MIX)], i, clients[w], wrong_key, tally)
            sample()

    try:
        await asyncio.gather(*(worker(w) for w in range(args.clients)))
    finally:
        for c in [*clients, wrong_key]:
            await c.close()
    if tally.samples[-1][0] != tally.sent:
        tally.samples.append((tally.sent, round(time.monotonic() - started, 2), rss_mb(server.pid)))


def write_chart(samples: list[tuple[int, float, float]], warm_up: int, path: Path, title: str) -> Path:
    import matplotlib

    matplotlib.use("Agg")  # no display
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7.5, 3.6), dpi=100)
    ax.plot([s[0] for s in samples], [s[2] for s in samples], color="#4c72b0", lw=1.4, label="server RSS")
    ax.axvline(warm_up, color="#dd8452", ls="--", lw=1, label=f"end of warm-up ({warm_up} requests)")
    ax.set_xlabel("requests served")
    ax.set_ylabel("RSS (MB)")
    ax.set_ylim(bottom=0)
    ax.grid(alpha=0.3)
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return path


def diff_dumps(first: tuple[Path, Path], second: tuple[Path, Path], top: int = 25) -> list[str]:
    """The top allocation differences (by line, then by traceback for the first few) and gc type counts."""
    import tracemalloc

    a, b = tracemalloc.Snapshot.load(str(first[0])), tracemalloc.Snapshot.load(str(second[0]))
    ignore = [tracemalloc.Filter(False, tracemalloc.__file__),
              tracemalloc.Filter(False, "<frozen importlib._bootstrap>")]
    a, b = a.filter_traces(ignore), b.filter_traces(ignore)
    lines = [f"traced: {sum(s.size for s in a.statistics('filename')) / 1e6:.1f} MB -> "
             f"{sum(s.size for s in b.statistics('filename')) / 1e6:.1f} MB"]
    lines += [str(stat) for stat in b.compare_to(a, "lineno")[:top]]
    for stat in b.compare_to(a, "traceback")[:3]:
        lines.append(f"-- {stat.size_diff / 1e3:+.1f} kB in {stat.count_diff:+d} blocks, allocated at:")
        lines += [f"     {frame}" for frame in stat.traceback.format()[-16:]]
    ga, gb = (json.loads(p[1].read_text()) for p in (first, second))
    lines.append(f"gc objects: {ga['objects']} -> {gb['objects']}")
    grew = sorted(((gb["by_type"].get(t, 0) - ga["by_type"].get(t, 0), t) for t in gb["by_type"]), reverse=True)
    lines += [f"  {t}: {ga['by_type'].get(t, 0)} -> {gb['by_type'][t]} ({d:+d})" for d, t in grew[:15] if d]
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=10_000)
    parser.add_argument("--clients", type=int, default=4, help="concurrent AsyncOpenAI clients (default 4)")
    parser.add_argument("--sample-every", type=int, default=100, help="RSS sample interval in requests")
    parser.add_argument("--warm-up", type=int, default=None, help="requests counted as warm-up (default 10%%)")
    parser.add_argument("--out", type=Path, default=REPO / ".cache" / "soak")
    parser.add_argument("--chart", type=Path, default=None, help="the PNG (default OUT/soak.png)")
    parser.add_argument("--tracemalloc", type=int, nargs="?", const=10, default=0, metavar="FRAMES",
                        help="snapshots after warm-up and at the end, diffed (FRAMES of traceback, default 10)")
    args = parser.parse_args(argv)
    args.warm_up = args.warm_up if args.warm_up is not None else max(args.sample_every, args.requests // 10)
    args.out.mkdir(parents=True, exist_ok=True)
    if not (TINY_DIR / "llama-guard").is_dir():
        from assistant.dev.tiny_guards.builder import build_tiny_guards

        build_tiny_guards(TINY_DIR)

    with tempfile.TemporaryDirectory(prefix="soak-") as tmp:
        server = Server(Path(tmp), tracemalloc_frames=args.tracemalloc)
        print(f"starting the server{' under tracemalloc' if server.traced else ''} ...", flush=True)
        server.start()
        dumps: list[tuple[Path, Path]] = []
        tally = Tally()
        started = time.monotonic()
        try:
            at_warm_up = (lambda: dumps.append(server.dump())) if server.traced else None
            asyncio.run(drive(server, args, tally, started, at_warm_up))
            if server.traced:
                dumps.append(server.dump())
        finally:
            elapsed = time.monotonic() - started
            server.stop()
            log_tail = server.log.read_text(errors="replace")[-2000:]
        if server.traced and len(dumps) == 2:
            report = diff_dumps(dumps[0], dumps[1])
            (args.out / "tracemalloc.txt").write_text("\n".join(report) + "\n", encoding="utf-8")
            print("\n".join(report))

    with (args.out / "soak.csv").open("w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["requests", "elapsed_s", "rss_mb"])
        writer.writerows([(n, t, round(rss, 1)) for n, t, rss in tally.samples])
    warm = next((s for s in tally.samples if s[0] >= args.warm_up), tally.samples[-1])
    peak_after = max(s[2] for s in tally.samples if s[0] >= warm[0])
    summary = {"requests": tally.sent, "clients": args.clients, "elapsed_s": round(elapsed, 1),
               "requests_per_s": round(tally.sent / elapsed, 1), "by_kind": tally.by_kind,
               "wrong_answers": len(tally.wrong), "rss_mb": {
                   "ready": round(tally.samples[0][2], 1), "after_warm_up": round(warm[2], 1),
                   "warm_up_requests": warm[0], "end": round(tally.samples[-1][2], 1),
                   "peak_after_warm_up": round(peak_after, 1)},
               "tracemalloc": bool(server.traced)}
    (args.out / "soak.json").write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    title = (f"bench/soak.py: {tally.sent} mixed requests, {args.clients} clients, tiny guards, scripted model"
             f"{' (tracemalloc on)' if server.traced else ''}")
    chart = write_chart(tally.samples, warm[0], args.chart or args.out / "soak.png", title)
    print(json.dumps(summary, indent=2))
    print(f"csv: {args.out / 'soak.csv'}\nchart: {chart}")
    if tally.wrong:
        print("wrong answers:\n  " + "\n  ".join(tally.wrong[:20]) + f"\nserver log tail:\n{log_tail}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

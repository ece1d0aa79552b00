"""What tracing costs: CPU seconds per turn of the benchmark's scenario (bench/scenario.py, bench/turn.py's `ours`
mode) with tracing on, exporting to a local collector, over tracing off (docs/OBSERVABILITY.md).

    python bench/tracing.py [--rounds 6] [--small] [--threads 1] [--collector URL] [--json]

One process runs the scenario through the real guarded agent as bench/turn.py does (tiny models: the teacher-forced
main model, Llama Guard and Prompt Guard each in a process of its own, speculative generation, streaming
moderation), as two conversations side by side, one untraced and one traced: two agents, each with its main model
and its KV cache, sharing the guard processes. Each round runs the whole scenario in both, turn by turn, the order
of each pair of turns alternating, so that a change in the machine's load (it is shared) falls on both sides alike;
which of the two agents is traced swaps every round (use an even number of rounds); two first rounds warm up
(models loaded, the exporter built here and in each guard process) and are not counted.
Tracing is switched per turn the way a deployer switches it, by `OTEL_EXPORTER_OTLP_ENDPOINT` (each turn reads it).

CPU time is that of the agent's process (every thread: the agent, the guards' threads, the exporter's) and of the
guard processes (read from /proc), with every span of the turn exported before the clock stops (the agent's and the
guard processes' exporters flushed after every turn, untraced ones too: an export per turn, more often than the
exporter's own 5-second batches, so the figure errs high). The collector is a local OTLP/HTTP sink in a process of its
own (tests/telemetry/otlp_sink.py: it decodes and counts the spans; its CPU is not ours) unless `--collector` names
one. Reported: each round's ratio, their median, and the ratio of the totals.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

ENDPOINT = "OTEL_EXPORTER_OTLP_ENDPOINT"
EXPECTED = {"answer": "final", "input_block": "refusal:user_input", "output_block": "refusal:model_output"}


def start_sink() -> tuple[subprocess.Popen[str], str]:
    """The local collector in a process of its own (its CPU time is not the agent's); its URL."""
    sink = subprocess.Popen([sys.executable, "-m", "tests.telemetry.otlp_sink", "--count-only"], cwd=REPO,
                            stdout=subprocess.PIPE, text=True, env=dict(os.environ, PYTHONPATH=str(REPO)))
    assert sink.stdout is not None
    return sink, sink.stdout.readline().strip()


def sink_spans(url: str) -> int | None:
    try:
        with urllib.request.urlopen(f"{url}/stats", timeout=5) as reply:
            return int(json.load(reply)["spans"])
    except (OSError, ValueError, KeyError):
        return None  # another collector (--collector) has no /stats


def flush_all() -> None:
    from guards.runtime.process import flush_traces
    from model.telemetry import export

    export.flush()
    flush_traces()


async def one_turn(bot: Any, turn: Any, thread: str, collector: str | None) -> float:
    """CPU seconds (the agent's process and the guard processes) of one turn, traced when `collector` is set, every
    span it made exported before the clock stops."""
    from bench.harness import _cpu_s, outcome_of

    if collector:
        os.environ[ENDPOINT] = collector
    else:
        os.environ.pop(ENDPOINT, None)
    cpu = _cpu_s()
    events = [event async for event in bot.stream(turn.user, thread=thread)]
    flush_all()  # untraced too: the same calls on both sides
    cpu = _cpu_s() - cpu
    outcome = outcome_of(events)
    if outcome != EXPECTED[turn.expect]:
        raise RuntimeError(f"{thread}: {turn.user!r} ended {outcome}, expected {EXPECTED[turn.expect]}")
    return cpu


async def measure(args: argparse.Namespace, collector: str, work: Path) -> dict[str, Any]:
    import torch

    from bench.harness import build_assistant, guard_models, import_model_classes, tiny_model_dirs
    from bench.scenario import Sizes, build_scenario

    scenario = build_scenario(Sizes.tiny() if args.small else Sizes())
    dirs = tiny_model_dirs(Path(args.models))
    torch.set_num_threads(args.threads)
    import_model_classes()
    # Two agents with one main model each (each keeps its own KV cache, as one conversation does) and the same
    # guard processes: the untraced and the traced conversation advance turn by turn, side by side. Which agent is
    # traced swaps every round, so that a difference between the two agents themselves (where their weights and
    # caches landed in memory) falls on both sides alike.
    agents = [build_assistant("ours", scenario, dirs, work / side, guard_threads=args.threads) for side in "ab"]
    guard_models(agents[0])
    targets = {"off": None, "on": collector}
    per_round: dict[str, list[float]] = {"off": [], "on": []}
    spans: list[int] = []
    for index in range(-2, args.rounds):  # rounds -2 and -1 warm up (exporters built here and in each guard process)
        bots = {"on": agents[index % 2], "off": agents[1 - index % 2]}
        for bot in agents:
            bot.backend.reset_cache()
        cpu = {"off": 0.0, "on": 0.0}
        before = sink_spans(collector)
        for number, turn in enumerate(scenario.turns):
            order = ("off", "on") if (index + number) % 2 == 0 else ("on", "off")
            for side in order:
                cpu[side] += await one_turn(bots[side], turn, f"{side}-{index}", targets[side])
        after = sink_spans(collector)
        if index >= 0:
            for side in cpu:
                per_round[side].append(cpu[side])
            if before is not None and after is not None:
                spans.append(after - before)
    os.environ.pop(ENDPOINT, None)
    off, on = per_round["off"], per_round["on"]
    turns = len(scenario.turns)
    ratios = [b / a for a, b in zip(off, on, strict=True)]
    return {
        "scenario": "small" if args.small else "full", "turns_per_round": turns, "rounds": args.rounds,
        "threads": args.threads,
        "cpu_s_per_turn_off": round(statistics.median(off) / turns, 4),
        "cpu_s_per_turn_on": round(statistics.median(on) / turns, 4),
        "cpu_on_over_off_median": round(statistics.median(ratios), 4),
        "cpu_on_over_off_total": round(sum(on) / sum(off), 4),
        "cpu_on_over_off_each_round": [round(r, 4) for r in ratios],
        "cpu_s_per_round": {"off": [round(x, 3) for x in off], "on": [round(x, 3) for x in on]},
        "spans_per_turn": round(statistics.median(spans) / turns, 1) if spans else None,
    }


def run(args: argparse.Namespace) -> dict[str, Any]:
    sink = None
    collector = args.collector
    if not collector:
        sink, collector = start_sink()
    saved = {k: os.environ.pop(k) for k in list(os.environ) if k.startswith("OTEL_")}
    started = time.perf_counter()
    load_before = os.getloadavg()
    try:
        with tempfile.TemporaryDirectory(prefix="bench-tracing-") as tmp:
            os.environ["ASSISTANT_HOME"] = str(Path(tmp) / "home")
            result = asyncio.run(measure(args, collector, Path(tmp)))
    finally:
        os.environ.update(saved)
        if sink is not None:
            sink.kill()
            sink.wait()
    result["collector"] = "local sink (tests/telemetry/otlp_sink.py)" if sink else collector
    result["load_average"] = {"before": [round(x, 2) for x in load_before],
                              "after": [round(x, 2) for x in os.getloadavg()]}
    result["bench_s"] = round(time.perf_counter() - started, 1)
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=6, help="rounds of the scenario, each untraced and traced")
    parser.add_argument("--small", action="store_true", help="the miniature scenario (a smoke test, not a figure)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads per operation (agent and guards)")
    parser.add_argument("--collector", help="an OTLP/HTTP collector's base URL instead of the local sink")
    parser.add_argument("--models", default=str(REPO / ".cache" / "tiny-models"), help="the tiny models' directory")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args(argv)
    result = run(args)
    if args.json:
        print(json.dumps(result))
    else:
        print(f"CPU s per turn ({result['scenario']} scenario, {args.rounds} rounds, agent + guard processes): "
              f"off {result['cpu_s_per_turn_off']}, on {result['cpu_s_per_turn_on']}; on/off median "
              f"{result['cpu_on_over_off_median']}, totals {result['cpu_on_over_off_total']}, each round "
              f"{result['cpu_on_over_off_each_round']}; {result['spans_per_turn']} spans per turn; load average "
              f"{result['load_average']['before']} -> {result['load_average']['after']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

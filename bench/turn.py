"""Ours vs unguarded vs the peers as they run today: one fixed multi-turn, multi-step scenario through the real agent.

    python bench/turn.py [--json] [--repeats 3] [--length-repeats 3] [--threads N] [--small] [--no-firewall]
                         [--chart bench.png] [--length-chart length.png]

Tiny real-architecture models on CPU (the tiny random Llama 3.1 as the main model, teacher-forced through a fixed
script - see bench/forced.py; the tiny trained Llama Guard 3 and Prompt Guard), five modes interleaved in one run
(unguarded, ogx, llama-stack (historical), llamafirewall, ours: bench/harness.py, bench/peers.py), every mode with
the same torch threads and cores and the main model's KV cache reused; then the growth-with-length family (one
answer of each of 200, 1,000, 4,000 and 16,000 characters, each a conversation of its own); then 8 conversations at
once (ours and unguarded), and our Prompt Guard scanner next to LlamaFirewall's (bench/firewall.py). Prints a table,
or with `--json` one JSON object with at least `turn_vs_unguarded`, `turn_vs_unguarded_long`,
`ttft_checked_vs_ogx`, `turn_vs_ogx`, `guard_tokens_vs_ogx`, `guard_cpu_share`,
`concurrent8_throughput_vs_unguarded` and `verdict_agreement` (ratios; 1.0 = equal), and the earlier rounds' keys.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

DEFAULT_MODELS = REPO / ".cache" / "tiny-models"
MODES_DEFAULT = ("unguarded", "ogx", "llama-stack", "llamafirewall", "ours")  # bench.harness.MODES, no torch import


def machine() -> dict[str, Any]:
    import torch

    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "load_average": [round(x, 2) for x in os.getloadavg()],
    }


def run(args: argparse.Namespace) -> dict[str, Any]:
    import torch

    from bench.harness import ALL_CORES, MODES, run_benchmark, run_throughput, tiny_model_dirs
    from bench.report import summarize
    from bench.scenario import Sizes, build_scenario

    sizes = Sizes.tiny() if args.small else Sizes()
    if args.prompt_guard_stride:
        sizes = dataclasses.replace(sizes, prompt_guard_stride=args.prompt_guard_stride)
    scenario = build_scenario(sizes)
    dirs = tiny_model_dirs(Path(args.models))
    threads, home = torch.get_num_threads(), os.environ.get("ASSISTANT_HOME")
    # The same CPU budget for every mode: one process, the same cores, the same torch threads per operation.
    torch.set_num_threads(args.threads)
    before = machine()
    started = time.perf_counter()
    unknown = set(args.modes.split(",")) - set(MODES)
    if unknown:
        raise SystemExit(f"unknown mode(s) {', '.join(sorted(unknown))}; use {', '.join(MODES)}")
    modes = tuple(m for m in MODES if m in args.modes.split(","))
    cores = len(os.sched_getaffinity(0))
    per_mode = {}
    if "unguarded" in modes and args.threads < cores:  # the unguarded model on every core too: the better of the
        modes += (ALL_CORES,)  # two is the baseline, so a thread setting never handicaps it
        per_mode[ALL_CORES] = cores
    guard_threads = args.threads if args.guard_process else None
    concurrent: list = []
    try:
        with tempfile.TemporaryDirectory() as tmp:
            os.environ["ASSISTANT_HOME"] = str(Path(tmp) / "home")
            records = asyncio.run(run_benchmark(
                scenario, dirs, Path(tmp), repeats=args.repeats, modes=modes, threads=per_mode,
                guard_threads=guard_threads, length_repeats=args.length_repeats))
            if args.concurrent > 0 and {"ours", "unguarded"} <= set(modes):
                first, _, last = args.concurrent_turns.partition(":")
                turns = slice(int(first), int(last) if last else int(first) + 1)
                concurrent = asyncio.run(run_throughput(
                    scenario, dirs, Path(tmp), conversations=args.concurrent, repeats=args.concurrent_repeats,
                    turns=turns, guard_threads=guard_threads))
    finally:
        torch.set_num_threads(threads)
        if home is None:
            os.environ.pop("ASSISTANT_HOME", None)
        else:
            os.environ["ASSISTANT_HOME"] = home
    summary = summarize(records, concurrent, sizes.lengths)
    summary["threads"] = args.threads
    summary["guard_process"] = args.guard_process
    summary["answered_turns"] = sum(t.expect == "answer" for t in scenario.turns)
    if concurrent:
        summary["concurrent"]["turns"] = args.concurrent_turns
    if args.records:
        rows = [{k: v for k, v in vars(r).items() if k not in ("events", "shown")} for r in records]
        Path(args.records).write_text(json.dumps(rows, indent=1), encoding="utf-8")
    summary["bench_s"] = round(time.perf_counter() - started, 1)
    summary["repeats"] = args.repeats
    summary["sizes"] = {"tool_words": list(sizes.tool_words), "answer_words": sizes.answer_words,
                        "chunk_chars": sizes.chunk_chars, "first_chunk_chars": sizes.first_chunk_chars,
                        "prompt_guard_stride": sizes.prompt_guard_stride, "lengths": list(sizes.lengths),
                        "length_repeats": args.length_repeats}
    summary["machine_before"] = before
    summary["machine_after"] = machine()
    summary["machine_after"]["torch_threads"] = args.threads
    if args.firewall:
        from bench.firewall import compare

        torch.set_num_threads(args.threads)
        try:
            summary["prompt_guard_vs_llamafirewall"] = compare(dirs.prompt_guard_2, words=800 if args.small else 3000)
        finally:
            torch.set_num_threads(threads)
    return summary


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--repeats", type=int, default=3, help="runs of the scenario per mode (medians are taken)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads per operation, the same for every "
                        "mode and every guard process (default 1; the unguarded mode also runs on every core, and "
                        "the faster of its two runs is the baseline)")
    parser.add_argument("--no-guard-process", dest="guard_process", action="store_false", help="run the guard "
                        "models on threads of the agent's process instead of processes of their own (every guarded "
                        "mode alike)")
    parser.add_argument("--concurrent", type=int, default=8, help="conversations at once for the throughput figure "
                        "(ours and unguarded; 0: skip)")
    parser.add_argument("--concurrent-turns", default="0:3", help="the scenario's turns each concurrent conversation "
                        "runs, as START:END (default 0:3, the answered turns)")
    parser.add_argument("--concurrent-repeats", type=int, default=1, help="concurrent runs per mode (median)")
    parser.add_argument("--prompt-guard-stride", type=int, help="policy prompt_guard.stride_tokens for every mode "
                        "(default 256: 512-token windows overlapping by half)")
    parser.add_argument("--chart", help="also write the PNG chart (time per turn, first checked token) here")
    parser.add_argument("--length-repeats", type=int, default=3, help="runs per mode of the growth-with-length "
                        "family (answers of 200, 1,000, 4,000 and 16,000 characters; 0: skip)")
    parser.add_argument("--length-chart", help="also write the PNG chart of cost against answer length here")
    parser.add_argument("--small", action="store_true", help="a miniature scenario (smoke test, not a measurement)")
    parser.add_argument("--no-firewall", dest="firewall", action="store_false", help="skip the LlamaFirewall part")
    parser.add_argument("--modes", default=",".join(MODES_DEFAULT))
    parser.add_argument("--models", default=str(DEFAULT_MODELS), help="directory of the tiny models (built if absent)")
    parser.add_argument("--records", help="also write every turn's figures (JSON) to this file")
    args = parser.parse_args(argv)
    summary = run(args)
    if args.chart:
        from bench.chart import write_chart

        summary["chart"] = str(write_chart(summary, Path(args.chart)))
    if args.length_chart and "lengths" in summary:
        from bench.chart import write_length_chart

        summary["length_chart"] = str(write_length_chart(summary, Path(args.length_chart)))
    if args.json:
        print(json.dumps(summary))
        return 0
    from bench.report import table

    m = summary["machine_before"]
    print(f"machine: {m['cpu']}, {m['cores']} cores, torch {m['torch']} ({summary['threads']} thread(s) per op), "
          f"load average {m['load_average']} before, {summary['machine_after']['load_average']} after")
    print(f"scenario: {summary['sizes']}, {summary['repeats']} repeat(s), medians; bench took {summary['bench_s']} s\n")
    print(table(summary))
    if summary.get("verdict_disagreements"):
        print("\ndisagreements:\n  " + "\n  ".join(summary["verdict_disagreements"]))
    if "prompt_guard_vs_llamafirewall" in summary:
        from bench.firewall import table as firewall_table

        print("\n" + firewall_table(summary["prompt_guard_vs_llamafirewall"]))
    return 0


if __name__ == "__main__":
    sys.exit(main())

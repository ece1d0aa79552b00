"""Cold start of the guards: a fresh process builds the pipeline of a policy and runs its first `user_input` check,
which loads Llama Guard and Prompt Guard (each on a worker thread, side by side when their loads may overlap).

    .venv/bin/python bench/guard_cold_start.py [--policy examples/policies/offline-smoke.yaml] [--runs 3]

Each run is a new Python process (nothing loaded yet; the OS file cache is warm after the first). Prints the median
seconds of: imports + pipeline, each guard's load alone inside the check, and the whole first check.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

_CHILD = """
import asyncio, json, sys, time
sys.path.insert(0, {repo!r})
started = time.perf_counter()
from guards.runtime.pipeline import GuardPipeline
from guards.policy import load_policy
from guards.runtime.registry import build_runners as default_runners
policy = load_policy({policy!r})
runners = default_runners(policy, {dirs!r})
loads = {{}}
for name, runner in runners.items():
    load = getattr(runner, "load", None)
    if load is not None:
        def timed(load=load, name=name):
            t = time.perf_counter()
            try:
                return load()
            finally:
                loads.setdefault(name, [t - started, time.perf_counter() - started])  # the first call loads
        runner.load = timed
pipeline = GuardPipeline(policy, runners)
ready = time.perf_counter() - started
t = time.perf_counter()
result = asyncio.run(pipeline.check("user_input", "What is the capital of France?"))
first = time.perf_counter() - t
print(json.dumps({{"ready_s": ready, "first_check_s": first, "loads": loads, "decision": result.decision}}))
"""


def tiny_dirs() -> dict[str, str]:
    from assistant.dev.tiny_guards.builder import build_tiny_guards

    built = build_tiny_guards(REPO / ".cache" / "tiny-models")
    return {"llama_guard": str(built["llama-guard"]), "prompt_guard": str(built["prompt-guard"])}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--policy", default=str(REPO / "examples" / "policies" / "offline-smoke.yaml"))
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    dirs = tiny_dirs() if "offline-smoke" in args.policy else {}
    code = _CHILD.format(repo=str(REPO), policy=args.policy, dirs=dirs)
    runs = []
    for _ in range(args.runs):
        out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True)
        runs.append(json.loads(out.stdout.strip().splitlines()[-1]))
    first = statistics.median(r["first_check_s"] for r in runs)
    print(f"policy: {args.policy} ({args.runs} fresh processes)")
    print(f"imports + pipeline: {statistics.median(r['ready_s'] for r in runs):.2f} s")
    for name in sorted(runs[0]["loads"]):
        spans = [r["loads"][name] for r in runs]
        took = statistics.median(end - start for start, end in spans)
        print(f"{name} load: {took:.2f} s (from {statistics.median(s for s, _ in spans):.2f} s to "
              f"{statistics.median(e for _, e in spans):.2f} s after start)")
    print(f"first check (loads included): {first:.2f} s")


if __name__ == "__main__":
    main()

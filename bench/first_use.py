"""First use of the offline smoke policy: from choosing it to an answered message, on a machine that has never built
the tiny models.

    .venv/bin/python bench/first_use.py [--json] [--policy examples/policies/offline-smoke.yaml]

Runs `assistant run --policy POLICY --json TEXT` as a user would, in a fresh process with an empty tiny-model cache
(`ASSISTANT_TINY_MODELS` and `ASSISTANT_HOME` pointed at new temporary folders): the tiny main model and guards are
built on first use, every model the policy names is loaded, and one guarded turn is answered (the point by which a
user who started typing at once has been served). Then the same command again in a new process with the models
built (a later start). Prints both times; `--json` prints one object with `first_use_s` and `warm_start_s`.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
TEXT = "hello, what can you do?"


def _cpu_children() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _run(policy: Path, env: dict[str, str], timeout_s: float) -> tuple[float, float, list[dict[str, Any]]]:
    """Wall seconds, CPU seconds (on a shared machine the CPU time is the steadier figure) and the events."""
    command = [str(Path(sys.executable).parent / "assistant"), "run", "--policy", str(policy), "--json", TEXT]
    cpu = _cpu_children()
    started = time.perf_counter()
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=timeout_s, check=False)
    elapsed = time.perf_counter() - started
    cpu = _cpu_children() - cpu
    events = []
    for line in done.stdout.splitlines():
        try:
            events.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    failed = [e for e in events if e.get("guard_error") or e.get("error")]
    if done.returncode not in (0, 3) or failed:  # an answer or a guards' refusal, not a guard failure
        raise RuntimeError(f"`assistant run` exited {done.returncode}: {(failed or [done.stderr[-2000:]])[0]}")
    return elapsed, cpu, events


def measure(policy: Path, *, timeout_s: float = 600.0) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        env = dict(os.environ)
        env["ASSISTANT_TINY_MODELS"] = str(Path(tmp) / "tiny-models")
        env["ASSISTANT_HOME"] = str(Path(tmp) / "home")
        for name in ("XDG_DATA_HOME", "XDG_CONFIG_HOME", "XDG_STATE_HOME", "XDG_CACHE_HOME"):
            env[name] = str(Path(tmp) / name.lower())
        cold, cold_cpu, events = _run(policy, env, timeout_s)
        warm, warm_cpu, _ = _run(policy, env, timeout_s)
    last = events[-1] if events else {}
    return {
        "policy": str(policy),
        "first_use_s": round(cold, 2),
        "warm_start_s": round(warm, 2),
        "tiny_models_build_s": round(max(cold - warm, 0.0), 2),  # what the first run does in addition
        "first_use_cpu_s": round(cold_cpu, 2),
        "warm_start_cpu_s": round(warm_cpu, 2),
        "outcome": last.get("type") or last.get("event") or "?",
        "load_average": [round(x, 2) for x in os.getloadavg()],
        "cores": len(os.sched_getaffinity(0)),
        "goal_s": 30.0,
        "met": cold <= 30.0,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--policy", default=str(REPO / "examples" / "policies" / "offline-smoke.yaml"))
    parser.add_argument("--timeout", type=float, default=600.0, help="seconds allowed per run")
    args = parser.parse_args(argv)
    result = measure(Path(args.policy), timeout_s=args.timeout)
    if args.json:
        print(json.dumps(result))
        return 0
    print(f"policy: {result['policy']} ({result['cores']} cores, load average {result['load_average']})")
    print(f"first use (tiny models built, every model loaded, one guarded turn): {result['first_use_s']:.1f} s "
          f"(goal <= 30 s: {'met' if result['met'] else 'MISSED'}), {result['first_use_cpu_s']:.1f} s of CPU")
    print(f"a later start (models built): {result['warm_start_s']:.1f} s; the difference, building the tiny models: "
          f"{result['tiny_models_build_s']:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())

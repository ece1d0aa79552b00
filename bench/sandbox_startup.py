"""Start-up cost of one sandboxed `pass` (bubblewrap, as the code interpreter runs it) vs a plain `python3 -c pass`.

    .venv/bin/python bench/sandbox_startup.py [--runs N]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tools.sandbox import SandboxLimits, run_python
from tools.sandbox.isolation import SYSTEM_PYTHON


def plain_ms() -> float:
    started = time.perf_counter()
    subprocess.run([SYSTEM_PYTHON, "-c", "pass"], check=True)
    return (time.perf_counter() - started) * 1000


async def sandboxed_ms(limits: SandboxLimits) -> tuple[float, str]:
    started = time.perf_counter()
    result = await run_python("pass", limits)
    elapsed = (time.perf_counter() - started) * 1000
    if not result.ok:
        raise SystemExit(f"sandboxed run failed: {result}")
    return elapsed, result.mechanism


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=20)
    runs = parser.parse_args().runs
    limits = SandboxLimits()
    await sandboxed_ms(limits)  # warm-up: the one-time isolation probe is not part of a run's cost
    plain_ms()
    plain = [plain_ms() for _ in range(runs)]
    sandboxed = []
    mechanism = ""
    for _ in range(runs):
        ms, mechanism = await sandboxed_ms(limits)
        sandboxed.append(ms)
    p, s = statistics.median(plain), statistics.median(sandboxed)
    print(f"plain python3 -c pass:       {p:7.1f} ms (median of {runs})")
    print(f"sandboxed pass ({mechanism}):    {s:7.1f} ms (median of {runs})")
    print(f"ratio:                       {s / p:7.1f}x")


if __name__ == "__main__":
    asyncio.run(main())

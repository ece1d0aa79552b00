"""Start-up cost of MCP servers: start, initialize and list tools, then stop; median of N starts per server.

Wall time depends on the machine's load; the server process's own CPU time (user+sys, whole life) much less.

    .venv/bin/python bench/mcp_startup.py [--repeat 5] [--json]

Servers: mcp-server-time (PyPI), @modelcontextprotocol/server-filesystem (npm, from `make mcp-servers`), and the
FastMCP demo server of the tests. Each start is measured alone (one server at a time).
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from guards.policy import parse_policy_text  # noqa: E402
from tools.mcp import start_mcp_tools  # noqa: E402

FS_SERVER = ROOT / ".cache/npm/node_modules/@modelcontextprotocol/server-filesystem/dist/index.js"


def servers(folder: str) -> list[dict]:
    return [
        {"name": "time", "command": sys.executable, "args": ["-m", "mcp_server_time", "--local-timezone", "UTC"]},
        {"name": "files", "command": "node", "args": [str(FS_SERVER), folder]},
        {"name": "demo", "command": sys.executable, "args": [str(ROOT / "tests/tools/mcp/servers/demo_server.py")]},
    ]


def measure(entry: dict, repeat: int) -> dict:
    config = parse_policy_text(json.dumps({"version": 1, "tools": {"mcp": [entry]}})).tools
    starts, stops, cpu, tools = [], [], [], 0
    for _ in range(repeat):
        children = resource.getrusage(resource.RUSAGE_CHILDREN)
        began = time.perf_counter()
        toolset = start_mcp_tools(config)
        started = time.perf_counter()
        if toolset.notices and not toolset.tools:
            raise SystemExit(f"{entry['name']}: {toolset.notices[0]}")
        tools = len(toolset.tools)
        toolset.close()
        starts.append((started - began) * 1000)
        stops.append((time.perf_counter() - started) * 1000)
        after = resource.getrusage(resource.RUSAGE_CHILDREN)  # the server process, reaped by close()
        cpu.append((after.ru_utime + after.ru_stime - children.ru_utime - children.ru_stime) * 1000)
    return {"server": entry["name"], "tools": tools, "start_ms_median": round(statistics.median(starts)),
            "start_ms_min": round(min(starts)), "stop_ms_median": round(statistics.median(stops)),
            "server_cpu_ms_median": round(statistics.median(cpu))}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        rows = [measure(entry, args.repeat) for entry in servers(folder)]
    if args.json:
        print(json.dumps(rows, indent=2))
        return
    for row in rows:
        print(f"{row['server']:6} {row['tools']:3} tools  start {row['start_ms_median']:5} ms median "
              f"(min {row['start_ms_min']})  stop {row['stop_ms_median']} ms  "
              f"server CPU {row['server_cpu_ms_median']} ms")


if __name__ == "__main__":
    main()

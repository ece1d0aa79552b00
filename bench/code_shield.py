"""Code Shield with and without the project's semgrep rules: detection, false positives and latency per snippet.

    .venv/bin/python bench/code_shield.py [--json] [--repeat N]

Each case is scanned on its own, as the agent scans one code_interpreter call: `CodeShieldGuard.scan_code` in Code
Shield's own use case (regex layer, semgrep where its prescan or the project's rule words say so). Sets:
- `codeshield_labelled`: Code Shield's 211 unit-test cases (tests/data/codeshield; 179 insecure, 32 secure, 8
  languages). examples/redteam/code_shield.jsonl holds the same 211 codes (checked here), so its figures are these.
- `python_rules`: the project's labelled Python cases (tests/guards/fixtures/python_rules_cases.jsonl; 34 insecure,
  30 secure, written for the rules: shell calls, ctypes, unpickling, eval/exec, names built at run time).
A case counts as detected when the treatment is warn or block (what `actions: {warn: block}` stops), and as
blocked when it is block (what the default actions stop). Latency: wall time of each scan of a Python case, with
the warm semgrep server (the default) and with a semgrep process per scan (GUARDS_WARM_SEMGREP=0); "semgrep
snippets" are the scans that needed the semgrep layer. The warm server starts once, at the guard's canary
(`server_start_ms`), before any scan.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import guards.code_shield.adapter as adapter  # noqa: E402
from guards.code_shield import semgrep_server  # noqa: E402
from guards.code_shield.guard import CodeShieldGuard  # noqa: E402


def load_sets() -> dict[str, list[dict[str, Any]]]:
    icd = json.loads((ROOT / "tests/data/codeshield/icd_unit_test_cases.json").read_text())
    labelled = [{"code": c["code"], "language": c["language"], "insecure": c["label"] == "insecure"} for c in icd]
    redteam = [json.loads(line) for line in (ROOT / "examples/redteam/code_shield.jsonl").read_text().splitlines()]
    if sorted((r["text"], r["language"]) for r in redteam) != sorted((c["code"], c["language"]) for c in labelled):
        raise SystemExit("examples/redteam/code_shield.jsonl no longer holds the labelled cases; measure it apart")
    rules_file = ROOT / "tests/guards/fixtures/python_rules_cases.jsonl"
    ours = [json.loads(line) for line in rules_file.read_text().splitlines()]
    python = [{"code": r["text"], "language": "python", "insecure": r["expected"] == "block"} for r in ours]
    return {"codeshield_labelled": labelled, "python_rules": python}


async def scan_all(guard: CodeShieldGuard, cases: list[dict[str, Any]], rules: bool, repeat: int) -> list[dict]:
    rows = []
    for case in cases:
        times = []
        for _ in range(repeat):
            before = len(SEMGREP_RUNS)
            started = time.perf_counter()
            result = await guard.scan_code(case["code"], case["language"], project_rules=rules)
            times.append((time.perf_counter() - started) * 1000)
            if result.error is not None:
                raise SystemExit(f"scan failed: {result.error}")
            semgrep = len(SEMGREP_RUNS) > before
        rows.append({**case, "treatment": result.treatment, "ms": statistics.median(times), "semgrep": semgrep})
    return rows


def rates(rows: list[dict[str, Any]]) -> dict[str, Any]:
    insecure = [r for r in rows if r["insecure"]]
    secure = [r for r in rows if not r["insecure"]]

    def share(group: list[dict[str, Any]], treatments: tuple[str, ...]) -> float:
        return round(sum(r["treatment"] in treatments for r in group) / len(group), 4) if group else 0.0

    return {
        "insecure": len(insecure),
        "secure": len(secure),
        "detected": share(insecure, ("warn", "block")),
        "blocked": share(insecure, ("block",)),
        "false_positive": share(secure, ("warn", "block")),
        "false_block": share(secure, ("block",)),
    }


def latency(rows: list[dict[str, Any]]) -> dict[str, Any]:
    def stats(values: list[float]) -> dict[str, Any]:
        if not values:
            return {"n": 0, "median_ms": None, "p95_ms": None}
        ordered = sorted(values)
        p95 = ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]
        return {"n": len(values), "median_ms": round(statistics.median(values), 1), "p95_ms": round(p95, 1)}

    return {"all": stats([r["ms"] for r in rows]), "semgrep_snippets": stats([r["ms"] for r in rows if r["semgrep"]])}


SEMGREP_RUNS: list[int] = []


def count_semgrep_runs() -> None:
    """Note every scan that reaches semgrep, by a process or by the warm server (canary scans aside)."""
    real_run, real_scan = adapter.run_semgrep, semgrep_server.SemgrepServer.scan

    async def counting_run(*args: Any, **kwargs: Any) -> Any:
        SEMGREP_RUNS.append(len(args[3]))
        return await real_run(*args, **kwargs)

    def counting_scan(self: Any, codes: Any, *args: Any, **kwargs: Any) -> Any:
        if codes and codes[0] != adapter.WARM_CANARY[0]:
            SEMGREP_RUNS.append(len(codes))
        return real_scan(self, codes, *args, **kwargs)

    adapter.run_semgrep = counting_run  # type: ignore[assignment]
    semgrep_server.SemgrepServer.scan = counting_scan  # type: ignore[method-assign]


async def measure(repeat: int) -> dict[str, Any]:
    count_semgrep_runs()
    os.environ[adapter.WARM_ENV] = "1"
    guard = CodeShieldGuard()
    started = time.perf_counter()
    canary = await guard.start()  # starts the warm server
    if canary is not None:
        raise SystemExit(canary)
    report: dict[str, Any] = {"sets": {}, "latency": {"warm": {}, "process_per_scan": {}}}
    report["server_start_ms"] = round((time.perf_counter() - started) * 1000, 1)
    sets = load_sets()
    python_rows: dict[str, list[dict[str, Any]]] = {"without": [], "with": []}
    for name, cases in sets.items():
        entry: dict[str, Any] = {"cases": len(cases)}
        for mode, rules in (("without", False), ("with", True)):
            rows = await scan_all(guard, cases, rules, repeat)
            entry[mode] = rates(rows)
            python_rows[mode] += [r for r in rows if r["language"] == "python"]
        report["sets"][name] = entry
    for mode, rows in python_rows.items():
        report["latency"]["warm"][mode] = latency(rows)
    # The Python cases again, a semgrep process per scan (same findings: tests/guards/test_code_shield_warm.py).
    os.environ[adapter.WARM_ENV] = "0"
    python_cases = [c for cases in sets.values() for c in cases if c["language"] == "python"]
    for mode, rules in (("without", False), ("with", True)):
        report["latency"]["process_per_scan"][mode] = latency(await scan_all(guard, python_cases, rules, repeat))
    os.environ[adapter.WARM_ENV] = "1"
    warm = report["latency"]["warm"]
    report["semgrep_snippet_median_ms"] = warm["with"]["semgrep_snippets"]["median_ms"]
    report["semgrep_snippet_p95_ms"] = warm["with"]["semgrep_snippets"]["p95_ms"]
    with_all, without_all = warm["with"]["all"]["median_ms"], warm["without"]["all"]["median_ms"]
    report["added_by_rules_median_ms"] = round(with_all - without_all, 1)
    means = {mode: statistics.mean(r["ms"] for r in rows) for mode, rows in python_rows.items()}
    report["added_by_rules_mean_ms"] = round(means["with"] - means["without"], 1)
    report["machine"] = f"{platform.machine()}, {os.cpu_count()} cores, python {platform.python_version()}"
    report["repeat"] = repeat
    return report


def table(report: dict[str, Any]) -> str:
    lines = ["| set | project rules | detected (warn+block) | blocked | false positives (warn+block) | false blocks |",
             "| --- | --- | ---: | ---: | ---: | ---: |"]
    for name, entry in report["sets"].items():
        for mode in ("without", "with"):
            r = entry[mode]
            lines.append(f"| {name} ({r['insecure']} insecure / {r['secure']} secure) | {mode} | "
                         f"{r['detected']:.1%} | {r['blocked']:.1%} | {r['false_positive']:.1%} | "
                         f"{r['false_block']:.1%} |")
    lines += ["", "| Python snippets | semgrep | project rules | n | median ms | p95 ms |",
              "| --- | --- | --- | ---: | ---: | ---: |"]
    for semgrep in ("warm", "process_per_scan"):
        for mode in ("without", "with"):
            for kind in ("semgrep_snippets", "all"):
                s = report["latency"][semgrep][mode][kind]
                lines.append(f"| {kind} | {semgrep} | {mode} | {s['n']} | {s['median_ms']} | {s['p95_ms']} |")
    lines.append(f"\nwarm server start (once, at the canary): {report['server_start_ms']} ms; added by the project "
                 f"rules per Python snippet (warm): median {report['added_by_rules_median_ms']} ms, mean "
                 f"{report['added_by_rules_mean_ms']} ms; machine: {report['machine']}")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true", help="print the figures as one JSON object")
    parser.add_argument("--repeat", type=int, default=1, help="scans per case (the median counts)")
    args = parser.parse_args()
    report = asyncio.run(measure(args.repeat))
    print(json.dumps(report) if args.json else table(report))


if __name__ == "__main__":
    main()

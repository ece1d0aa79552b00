"""The load chart `make bench` writes: turns per second and p95 turn time by concurrent clients, the guarded
server against the same server with its guards off (bench/serve_load.py).

    python bench/load_chart.py SUMMARY.json OUT.png     # from a saved `bench/serve_load.py --json` output
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from statistics import median
from typing import Any

COLORS = {"unguarded": "#4c72b0", "guarded": "#dd8452", "batched": "#55a868"}
LABELS = {"unguarded": "guards off", "guarded": "guarded, checks one at a time",
          "batched": "guarded, checks batched (default)"}


def write_load_chart(summary: dict[str, Any], path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")  # no display
    import matplotlib.pyplot as plt

    runs = summary["runs"]
    counts = sorted({r["clients"] for r in runs})
    fig, (left, right) = plt.subplots(1, 2, figsize=(9, 3.8), dpi=110)
    for mode, color in COLORS.items():
        if not any(r["mode"] == mode for r in runs):
            continue
        # the median over repeats, per client count
        tps = [median([r["turns_per_s"] for r in runs if r["mode"] == mode and r["clients"] == n]) for n in counts]
        p95 = [median([r["turn_p95_s"] for r in runs if r["mode"] == mode and r["clients"] == n]) for n in counts]
        left.plot(counts, tps, marker="o", color=color, label=LABELS[mode])
        right.plot(counts, p95, marker="o", color=color, label=LABELS[mode])
        for n, a, b in zip(counts, tps, p95, strict=True):
            left.annotate(f"{a:.2f}", (n, a), textcoords="offset points", xytext=(0, 5), ha="center", fontsize=7)
            right.annotate(f"{b:.1f}", (n, b), textcoords="offset points", xytext=(0, 5), ha="center", fontsize=7)
    left.set(xlabel="concurrent clients", ylabel="turns per second", xticks=counts)
    right.set(xlabel="concurrent clients", ylabel="p95 turn time (s)", xticks=counts)
    left.set_ylim(bottom=0)
    right.set_ylim(bottom=0)
    left.legend(fontsize=8)
    machine = summary.get("machine_before", {})
    fig.suptitle(f"bench/serve_load.py: assistant serve, {machine.get('cores', '?')} cores, "
                 f"load {machine.get('load_average', ['?'])[0]}, scenario size {summary.get('size', '?')}", fontsize=9)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return path


def main(argv: list[str] | None = None) -> int:
    args = argv if argv is not None else sys.argv[1:]
    if len(args) != 2:
        print("usage: python bench/load_chart.py SUMMARY.json OUT.png", file=sys.stderr)
        return 2
    summary = json.loads(Path(args[0]).read_text(encoding="utf-8"))
    print(write_load_chart(summary, Path(args[1])))
    return 0


if __name__ == "__main__":
    sys.exit(main())

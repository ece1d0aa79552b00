"""The chart `make bench` writes: time per turn and time to the first checked token by mode (PNG, matplotlib).

    python bench/chart.py SUMMARY.json OUT.png     # from a saved `bench/turn.py --json` output
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

ORDER = ("unguarded", "ours", "llama-stack", "llamafirewall")


def write_chart(summary: dict[str, Any], path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")  # no display
    import matplotlib.pyplot as plt

    figures = dict(summary["modes"])
    labels = {m: m for m in ORDER}
    if "unguarded-all-cores" in figures and "unguarded" in figures:  # the baseline the ratios divide by
        one, every = figures["unguarded"], figures["unguarded-all-cores"]
        figures["unguarded"] = {k: min(one[k] or 0.0, every[k] or 0.0) or None for k in
                                ("turn_s", "ttft_checked_s", "ttft_shown_s")}
        labels["unguarded"] = "unguarded\n(better of 1 thread\n/ all cores)"
    modes = [m for m in ORDER if m in figures]
    answered = max(1, int(summary.get("answered_turns", 1)))  # the figures are sums over these turns
    turn = [figures[m]["turn_s"] / answered for m in modes]
    checked = [(figures[m]["ttft_checked_s"] or 0.0) / answered for m in modes]
    shown = [(figures[m]["ttft_shown_s"] or 0.0) / answered for m in modes]
    x = range(len(modes))
    fig, ax = plt.subplots(figsize=(7.5, 4.2), dpi=110)
    width = 0.38
    ax.bar([i - width / 2 for i in x], turn, width, label="time per turn", color="#4c72b0")
    ax.bar([i + width / 2 for i in x], checked, width, label="time to first checked token", color="#dd8452")
    for i in x:
        if shown[i] and abs(shown[i] - checked[i]) > 1e-6:  # llama-stack shows unchecked text first
            ax.plot([i, i + width], [shown[i]] * 2, color="black", lw=2)
            ax.annotate("first shown\n(unchecked)", (i + width / 2, shown[i]), textcoords="offset points",
                        xytext=(0, 4), ha="center", fontsize=7)
    for i in x:
        ax.annotate(f"{turn[i]:.2f}", (i - width / 2, turn[i]), textcoords="offset points", xytext=(0, 2),
                    ha="center", fontsize=7)
        ax.annotate(f"{checked[i]:.2f}", (i + width / 2, checked[i]), textcoords="offset points", xytext=(0, 2),
                    ha="center", fontsize=7)
    ax.set_xticks(list(x), [labels[m] for m in modes], fontsize=8)
    ax.set_ylabel("seconds (median, per answered turn)")
    machine = summary.get("machine_before", {})
    where = "guards in their own processes" if summary.get("guard_process") else "guards on threads"
    ax.set_title(f"bench/turn.py: {machine.get('cores', '?')} cores, {summary.get('threads', '?')} torch thread(s) "
                 f"per operation, {where}, load {machine.get('load_average', ['?'])[0]}", fontsize=9)
    ax.legend(fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return path


def main(argv: list[str] | None = None) -> int:
    args = argv if argv is not None else sys.argv[1:]
    if len(args) != 2:
        print("usage: python bench/chart.py SUMMARY.json OUT.png", file=sys.stderr)
        return 2
    summary = json.loads(Path(args[0]).read_text(encoding="utf-8"))
    print(write_chart(summary, Path(args[1])))
    return 0


if __name__ == "__main__":
    sys.exit(main())

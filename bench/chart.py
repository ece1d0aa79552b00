"""The charts `make bench` writes (PNG, matplotlib): time per turn and time to the first checked token by mode;
and the cost of checking against the answer's length (guard tokens, time to the last checked token).

    python bench/chart.py SUMMARY.json OUT.png [LENGTH_OUT.png]   # from a saved `bench/turn.py --json` output
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

ORDER = ("unguarded", "ours", "ogx", "llama-stack", "llamafirewall")


def write_chart(summary: dict[str, Any], path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")  # no display
    import matplotlib.pyplot as plt

    figures = dict(summary["modes"])
    labels = {m: m for m in ORDER} | {"llama-stack": "llama-stack\n(historical)"}
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


LENGTH_STYLE = {"unguarded": ("#555555", "o"), "ours": ("#4c72b0", "s"), "ogx": ("#dd8452", "^"),
                "llama-stack": ("#8c8c8c", "v"), "llamafirewall": ("#55a868", "D")}


def write_length_chart(summary: dict[str, Any], path: Path) -> Path:
    """Two panels against the answer's length (log-log): guard tokens prefilled, and time to the last checked
    token (the unguarded line is the better of its two runs)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    lengths = dict(summary["lengths"])
    if "unguarded-all-cores" in lengths and "unguarded" in lengths:
        one, every = lengths.pop("unguarded"), lengths.pop("unguarded-all-cores")
        lengths["unguarded"] = {k: {"last_checked_s": min(one[k]["last_checked_s"], every[k]["last_checked_s"]),
                                    "guard_tokens": 0} for k in one if k in every}
    fig, (tokens, seconds) = plt.subplots(1, 2, figsize=(9.5, 4.0), dpi=110)
    for mode in (m for m in ORDER if m in lengths):
        chars = sorted(int(k) for k in lengths[mode])
        color, marker = LENGTH_STYLE[mode]
        label = "llama-stack (historical)" if mode == "llama-stack" else mode
        if mode != "unguarded":
            tokens.plot(chars, [lengths[mode][str(c)]["guard_tokens"] for c in chars], marker=marker, color=color,
                        label=label)
        seconds.plot(chars, [lengths[mode][str(c)]["last_checked_s"] for c in chars], marker=marker, color=color,
                     label=label)
    titles = ("guard tokens read (prefill + decode)", "time to the last checked token (s)")
    for ax, title in zip((tokens, seconds), titles, strict=True):
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("answer length (characters)")
        ax.set_title(title, fontsize=9)
        ax.grid(True, which="both", alpha=0.3)
    seconds.legend(fontsize=7)  # every mode, unguarded included (the tokens panel has no unguarded line)
    machine = summary.get("machine_before", {})
    fig.suptitle(f"bench/turn.py, growth with answer length: {machine.get('cores', '?')} cores, "
                 f"{summary.get('threads', '?')} torch thread(s) per operation, guard caches reused, "
                 f"load {machine.get('load_average', ['?'])[0]}", fontsize=9)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return path


def main(argv: list[str] | None = None) -> int:
    args = argv if argv is not None else sys.argv[1:]
    if len(args) not in (2, 3):
        print("usage: python bench/chart.py SUMMARY.json OUT.png [LENGTH_OUT.png]", file=sys.stderr)
        return 2
    summary = json.loads(Path(args[0]).read_text(encoding="utf-8"))
    print(write_chart(summary, Path(args[1])))
    if len(args) == 3:
        print(write_length_chart(summary, Path(args[2])))
    return 0


if __name__ == "__main__":
    sys.exit(main())

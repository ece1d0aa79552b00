"""Turn the benchmark's per-turn records into per-mode figures, the ratios the issue asks for, and a table.

Timings are medians over the repeats, per turn, then summed over turns. Time to first visible token and turn time
are compared on the turns every mode answers (`expect == "answer"`): a blocked turn ends early in a guarded mode,
which would flatter it. Token counts are deterministic and summed over all turns of one repeat.
"""

from __future__ import annotations

import statistics
from collections import defaultdict
from collections.abc import Sequence
from typing import Any

from bench.harness import TurnRecord

TARGETS = {
    "turn_optimized_vs_unguarded": ("<=", 1.15),
    "ttft_optimized_vs_reference": ("<=", 0.5),
    "prefill_optimized_vs_reference": ("<=", 0.3),
    "verdict_agreement": (">=", 1.0),
}


def _median_sum(records: Sequence[TurnRecord], attribute: str) -> float | None:
    per_turn: dict[int, list[float]] = defaultdict(list)
    for record in records:
        value = getattr(record, attribute)
        if value is not None:
            per_turn[record.turn].append(value)
    if not per_turn:
        return None
    return sum(statistics.median(values) for values in per_turn.values())


def mode_figures(records: Sequence[TurnRecord]) -> dict[str, Any]:
    answered = [r for r in records if r.expect == "answer"]
    first = min(r.repeat for r in records)
    one = [r for r in records if r.repeat == first]
    return {
        "ttft_s": _median_sum(answered, "ttft_s"),
        "turn_s": _median_sum(answered, "turn_s"),
        "all_turns_s": _median_sum(records, "turn_s"),
        "main_prompt_tokens": sum(r.main_prompt for r in one),
        "main_prefill_tokens": sum(r.main_prefill for r in one),
        "main_prefill_per_turn": [r.main_prefill for r in one],
        "main_prompt_per_turn": [r.main_prompt for r in one],
        "main_generated_tokens": sum(r.main_generated for r in one),
        "llama_guard_tokens": sum(r.llama_guard_tokens for r in one),
        "prompt_guard_tokens": sum(r.prompt_guard_tokens for r in one),
        "turn_s_spread": _spread(answered),
        "outcomes": [r.outcome for r in one],
        "leaks": sum(r.leaked for r in records),
    }


def _spread(records: Sequence[TurnRecord]) -> list[float]:
    """Total answered-turn time of each repeat (shows the noise behind the medians)."""
    totals: dict[int, float] = defaultdict(float)
    for record in records:
        totals[record.repeat] += record.turn_s
    return [round(totals[k], 3) for k in sorted(totals)]


def agreement(a: Sequence[TurnRecord], b: Sequence[TurnRecord]) -> tuple[float, int, list[str]]:
    """Share of check points (stage decisions, plus each turn's outcome) on which two modes agree, over every
    (repeat, turn) pair; and a description of each disagreement."""
    by_key = {(r.repeat, r.turn): r for r in b}
    total = matched = 0
    problems: list[str] = []
    for left in a:
        right = by_key.get((left.repeat, left.turn))
        if right is None:
            continue
        points_left = [*left.checkpoints, ("outcome", left.outcome)]
        points_right = [*right.checkpoints, ("outcome", right.outcome)]
        for i in range(max(len(points_left), len(points_right))):
            total += 1
            one = points_left[i] if i < len(points_left) else None
            two = points_right[i] if i < len(points_right) else None
            if one == two:
                matched += 1
            else:
                problems.append(f"repeat {left.repeat} turn {left.turn} check {i}: {one} vs {two}")
    return (matched / total if total else 0.0), total, problems


def _ratio(a: float | None, b: float | None) -> float | None:
    if a is None or b is None or b == 0:
        return None
    return round(a / b, 4)


def summarize(records: Sequence[TurnRecord]) -> dict[str, Any]:
    by_mode: dict[str, list[TurnRecord]] = defaultdict(list)
    for record in records:
        by_mode[record.mode].append(record)
    figures = {mode: mode_figures(rs) for mode, rs in by_mode.items()}
    out: dict[str, Any] = {"modes": figures}
    opt, ref, ung = figures.get("optimized"), figures.get("reference"), figures.get("unguarded")
    if opt and ref:
        out["ttft_optimized_vs_reference"] = _ratio(opt["ttft_s"], ref["ttft_s"])
        out["turn_optimized_vs_reference"] = _ratio(opt["turn_s"], ref["turn_s"])
        out["prefill_optimized_vs_reference"] = _ratio(opt["main_prefill_tokens"], ref["main_prefill_tokens"])
        out["guard_tokens_optimized_vs_reference"] = _ratio(opt["llama_guard_tokens"], ref["llama_guard_tokens"])
        share, points, problems = agreement(by_mode["reference"], by_mode["optimized"])
        out["verdict_agreement"] = round(share, 4)
        out["verdict_checkpoints"] = points
        out["verdict_disagreements"] = problems[:20]
    if opt and ung:
        out["ttft_optimized_vs_unguarded"] = _ratio(opt["ttft_s"], ung["ttft_s"])
        out["turn_optimized_vs_unguarded"] = _ratio(opt["turn_s"], ung["turn_s"])
        out["prefill_optimized_vs_unguarded"] = _ratio(opt["main_prefill_tokens"], ung["main_prefill_tokens"])
    if ref and ung:
        out["ttft_reference_vs_unguarded"] = _ratio(ref["ttft_s"], ung["ttft_s"])
        out["turn_reference_vs_unguarded"] = _ratio(ref["turn_s"], ung["turn_s"])
    out["targets"] = {key: _meets(out.get(key), *rule) for key, rule in TARGETS.items()}
    return out


def _meets(value: float | None, op: str, bound: float) -> bool | None:
    if value is None:
        return None
    return value <= bound if op == "<=" else value >= bound


def table(summary: dict[str, Any]) -> str:
    rows = [("mode", "TTFT s", "turn s", "all turns s", "main prefill tok", "Llama Guard tok", "Prompt Guard tok")]
    for mode, f in summary["modes"].items():
        rows.append((
            mode, _fmt(f["ttft_s"]), _fmt(f["turn_s"]), _fmt(f["all_turns_s"]), str(f["main_prefill_tokens"]),
            str(f["llama_guard_tokens"]), str(f["prompt_guard_tokens"]),
        ))  # fmt: skip
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = [
        "  ".join(cell.rjust(w) if i else cell.ljust(w) for i, (cell, w) in enumerate(zip(row, widths, strict=True)))
        for row in rows
    ]
    lines.insert(1, "  ".join("-" * w for w in widths))
    lines.append("")
    for key in (
        "ttft_optimized_vs_reference", "ttft_optimized_vs_unguarded", "turn_optimized_vs_unguarded",
        "turn_optimized_vs_reference", "prefill_optimized_vs_reference", "guard_tokens_optimized_vs_reference",
        "ttft_reference_vs_unguarded", "turn_reference_vs_unguarded", "verdict_agreement",
    ):  # fmt: skip
        if key in summary:
            target = TARGETS.get(key)
            note = ""
            if target:
                met = summary["targets"][key]
                note = f"   target {target[0]} {target[1]}: {'met' if met else 'MISSED'}"
            lines.append(f"{key:>38}: {summary[key]}{note}")
    return "\n".join(lines)


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"

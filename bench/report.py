"""Turn the benchmark's records into per-mode figures, the ratios issue 18 asks for, and a table.

Timings are medians over the repeats, per turn, then summed over turns. Time to first token and turn time are
compared on the turns every mode answers (`expect == "answer"`): a blocked turn ends early in a guarded mode, which
would flatter it. Token counts are deterministic and summed over all turns of one repeat; the main model's prefill
tokens are a property of the backend (its KV cache is reused in every mode), reported, not compared.
"""

from __future__ import annotations

import statistics
from collections import defaultdict
from collections.abc import Sequence
from typing import Any

from bench.harness import ALL_CORES, ConcurrentRun, TurnRecord

TARGETS = {  # issue 31 (the first round's ttft_checked_vs_unguarded and turn_vs_llama_stack goals are retired)
    "turn_vs_unguarded": ("<=", 1.10),
    "turn_vs_unguarded_long": ("<=", 1.10),
    "ttft_checked_vs_ogx": ("<=", 0.50),
    "turn_vs_ogx": ("<=", 0.95),
    "guard_tokens_vs_ogx": ("<=", 0.80),
    "ttft_checked_vs_llama_stack": ("<=", 0.35),
    "concurrent8_throughput_vs_unguarded": (">=", 0.80),
    "verdict_agreement": (">=", 1.0),
}
PEER_KEYS = {"ogx": "ogx", "llama-stack": "llama_stack", "llamafirewall": "llamafirewall"}


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
        "ttft_checked_s": _median_sum(answered, "ttft_s"),
        "ttft_shown_s": _median_sum(answered, "ttft_shown_s"),
        "turn_s": _median_sum(answered, "turn_s"),
        "turn_cpu_s": _median_sum(answered, "cpu_s"),
        "guard_cpu_s": _median_sum(answered, "guard_cpu_s"),
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
    """Share of check points on which two modes agree, over every (repeat, turn) pair; and each disagreement.
    A check point is one stage's decision at one step (plus each turn's outcome); only the stages both modes check
    are compared (Llama Stack checks no tool result inside a turn)."""
    stages = _stages(a) & _stages(b)
    by_key = {(r.repeat, r.turn): r for r in b}
    total = matched = 0
    problems: list[str] = []
    for left in a:
        right = by_key.get((left.repeat, left.turn))
        if right is None:
            continue
        points_left = [p for p in left.checkpoints if p[0] in stages] + [("outcome", left.outcome)]
        points_right = [p for p in right.checkpoints if p[0] in stages] + [("outcome", right.outcome)]
        for i in range(max(len(points_left), len(points_right))):
            total += 1
            one = points_left[i] if i < len(points_left) else None
            two = points_right[i] if i < len(points_right) else None
            if one == two:
                matched += 1
            else:
                problems.append(f"repeat {left.repeat} turn {left.turn} check {i}: {one} vs {two}")
    return (matched / total if total else 0.0), total, problems


def _stages(records: Sequence[TurnRecord]) -> set[str]:
    return {stage for r in records for stage, _ in r.checkpoints}


def _ratio(a: float | None, b: float | None) -> float | None:
    if a is None or b is None or b == 0:
        return None
    return round(a / b, 4)


def throughput(runs: Sequence[ConcurrentRun]) -> dict[str, Any]:
    """Median turns per second of each mode's concurrent runs, and ours / unguarded."""
    by_mode: dict[str, list[ConcurrentRun]] = defaultdict(list)
    for run in runs:
        by_mode[run.mode].append(run)
    out: dict[str, Any] = {
        mode: {
            "turns_per_s": round(statistics.median(r.turns_per_s for r in rs), 4),
            "wall_s": [round(r.wall_s, 2) for r in rs],
            "cpu_s": [round(r.cpu_s, 2) for r in rs],
            "turns": rs[0].turns,
            "outcomes": sorted(set(rs[0].outcomes)),
        }
        for mode, rs in by_mode.items()
    }
    if "ours" in out and "unguarded" in out:
        n = runs[0].conversations
        out["conversations"] = n
        ratio = _ratio(out["ours"]["turns_per_s"], out["unguarded"]["turns_per_s"])
        out[f"concurrent{n}_throughput_vs_unguarded"] = ratio
    return out


BASELINE_FIGURES = ("turn_s", "ttft_checked_s", "ttft_shown_s", "turn_cpu_s")


def baseline(figures: dict[str, dict[str, Any]], out: dict[str, Any]) -> dict[str, Any] | None:
    """The unguarded figures every ratio divides by: per figure the better of the unguarded mode and, when it ran,
    the same mode on every core (`unguarded-all-cores`), so that no thread setting handicaps the baseline."""
    ung, all_cores = figures.get("unguarded"), figures.get(ALL_CORES)
    if ung is None or all_cores is None:
        return ung
    best = dict(ung)
    out["unguarded_baseline"] = {}
    for key in BASELINE_FIGURES:
        out[f"{key.removesuffix('_s')}_all_cores_vs_unguarded"] = _ratio(all_cores[key], ung[key])
        if all_cores[key] is not None and (ung[key] is None or all_cores[key] < ung[key]):
            best[key] = all_cores[key]
        out["unguarded_baseline"][key] = ALL_CORES if best[key] is all_cores[key] else "unguarded"
    return best


def length_figures(records: Sequence[TurnRecord], lengths: Sequence[int]) -> dict[str, dict[str, Any]]:
    """Per answer length (characters, as a string key): medians over the repeats of the time to the last checked
    token, the turn, the first checked token and the CPU; guard tokens of the first repeat (deterministic)."""
    out: dict[str, dict[str, Any]] = {}
    for index, chars in enumerate(lengths):
        rs = [r for r in records if r.turn == index]
        if not rs:
            continue
        first = min(r.repeat for r in rs)
        one = next(r for r in rs if r.repeat == first)
        out[str(chars)] = {
            "last_checked_s": _median_sum(rs, "last_checked_s"),
            "turn_s": _median_sum(rs, "turn_s"),
            "ttft_checked_s": _median_sum(rs, "ttft_s"),
            "turn_cpu_s": _median_sum(rs, "cpu_s"),
            "guard_tokens": one.llama_guard_tokens + one.prompt_guard_tokens,
            "llama_guard_tokens": one.llama_guard_tokens,
            "prompt_guard_tokens": one.prompt_guard_tokens,
            "checks": sum(1 for e in one.events if e.get("type") == "verdict" and e.get("stage") == "model_output"
                          and e.get("guard") == "llama_guard"),  # Llama Guard checks of the answer
            "turn_s_runs": [round(r.turn_s, 3) for r in sorted(rs, key=lambda r: r.repeat)],
            "outcome": one.outcome,
        }
    return out


LENGTH_FIGURES = ("last_checked_s", "turn_s", "ttft_checked_s", "turn_cpu_s")


def length_keys(lengths: dict[str, dict[str, dict[str, Any]]], out: dict[str, Any]) -> None:
    """The issue's keys read from the length family: the longest answer (`_long`, the 16,000 characters) and the
    second longest (`turn_vs_ogx`, the 4,000), each ratio divided by the better unguarded run."""
    ours, ogx = lengths.get("ours"), lengths.get("ogx")
    keys = sorted({int(k) for figures in lengths.values() for k in figures})
    if not ours or len(keys) < 2:
        return
    long, second = str(keys[-1]), str(keys[-2])
    base: dict[str, dict[str, Any]] = {}
    for chars in (long, second):
        candidates = [lengths[m][chars] for m in ("unguarded", ALL_CORES) if chars in lengths.get(m, {})]
        if candidates:
            base[chars] = {k: min((c[k] for c in candidates if c[k] is not None), default=None) for k in LENGTH_FIGURES}
    if long in base:
        out["turn_vs_unguarded_long"] = _ratio(ours[long]["turn_s"], base[long]["turn_s"])
        out["last_checked_vs_unguarded_long"] = _ratio(ours[long]["last_checked_s"], base[long]["last_checked_s"])
    if ogx:
        out["turn_vs_ogx"] = _ratio(ours[second]["turn_s"], ogx[second]["turn_s"])
        out["last_checked_vs_ogx_long"] = _ratio(ours[long]["last_checked_s"], ogx[long]["last_checked_s"])
        out["guard_tokens_vs_ogx"] = _ratio(ours[long]["guard_tokens"], ogx[long]["guard_tokens"])
        if long in base:
            out["turn_ogx_vs_unguarded_long"] = _ratio(ogx[long]["turn_s"], base[long]["turn_s"])
        if second in base:
            out["turn_ogx_vs_unguarded_second"] = _ratio(ogx[second]["turn_s"], base[second]["turn_s"])
            out["turn_vs_unguarded_second"] = _ratio(ours[second]["turn_s"], base[second]["turn_s"])
    out["length_chars"] = {"long": int(long), "second": int(second)}


def summarize(
    records: Sequence[TurnRecord], concurrent: Sequence[ConcurrentRun] = (), lengths: Sequence[int] = ()
) -> dict[str, Any]:
    by_mode: dict[str, list[TurnRecord]] = defaultdict(list)
    by_mode_lengths: dict[str, list[TurnRecord]] = defaultdict(list)
    for record in records:
        (by_mode if record.family == "scenario" else by_mode_lengths)[record.mode].append(record)
    figures = {mode: mode_figures(rs) for mode, rs in by_mode.items()}
    out: dict[str, Any] = {"modes": figures}
    ours, ung = figures.get("ours"), baseline(figures, out)
    if ours and ung:
        out["turn_vs_unguarded"] = _ratio(ours["turn_s"], ung["turn_s"])
        out["ttft_checked_vs_unguarded"] = _ratio(ours["ttft_checked_s"], ung["ttft_checked_s"])
        out["turn_cpu_vs_unguarded"] = _ratio(ours["turn_cpu_s"], ung["turn_cpu_s"])
        out["guard_cpu_share"] = _ratio(ours["guard_cpu_s"], ours["turn_cpu_s"])
    shares: list[float] = []
    out["verdict_agreement_by_peer"], out["verdict_checkpoints"], out["verdict_disagreements"] = {}, {}, []
    for peer, key in PEER_KEYS.items():
        theirs = figures.get(peer)
        if theirs is None:
            continue
        if ours:
            out[f"turn_vs_{key}"] = _ratio(ours["turn_s"], theirs["turn_s"])
            out[f"ttft_checked_vs_{key}"] = _ratio(ours["ttft_checked_s"], theirs["ttft_checked_s"])
            out[f"ttft_checked_vs_{key}_shown"] = _ratio(ours["ttft_checked_s"], theirs["ttft_shown_s"])
            out[f"turn_cpu_vs_{key}"] = _ratio(ours["turn_cpu_s"], theirs["turn_cpu_s"])
            share, points, problems = agreement(by_mode[peer], by_mode["ours"])
            shares.append(share)
            out["verdict_agreement_by_peer"][peer] = round(share, 4)
            out["verdict_checkpoints"][peer] = points
            out["verdict_disagreements"] += [f"{peer}: {p}" for p in problems[:10]]
        if ung:
            out[f"turn_{key}_vs_unguarded"] = _ratio(theirs["turn_s"], ung["turn_s"])
            out[f"ttft_checked_{key}_vs_unguarded"] = _ratio(theirs["ttft_checked_s"], ung["ttft_checked_s"])
            out[f"ttft_shown_{key}_vs_unguarded"] = _ratio(theirs["ttft_shown_s"], ung["ttft_checked_s"])
    if shares:
        out["verdict_agreement"] = round(min(shares), 4)
    stack = figures.get("llama-stack")
    if ours and ung and stack:  # the keys of the first performance issue (CONTRACTS.md), kept for outside checks:
        # the old `reference` is the Llama Stack way now; its prefill without cache reuse is the prompt tokens
        out["ttft_optimized_vs_reference"] = out["ttft_checked_vs_llama_stack"]
        out["turn_optimized_vs_unguarded"] = out["turn_vs_unguarded"]
        out["prefill_optimized_vs_reference"] = _ratio(ours["main_prefill_tokens"], stack["main_prompt_tokens"])
    if "turn_vs_ogx" in out:  # the turn_vs_ogx is the length family's 4,000-character answer
        out["turn_vs_ogx_scenario"] = out.pop("turn_vs_ogx")
    if by_mode_lengths:
        out["lengths"] = {mode: length_figures(rs, lengths) for mode, rs in by_mode_lengths.items()}
        length_keys(out["lengths"], out)
    if concurrent:
        out["concurrent"] = throughput(concurrent)
        for key, value in out["concurrent"].items():
            if key.endswith("_throughput_vs_unguarded"):
                out[key] = value
    out["targets"] = {key: _meets(out.get(key), *rule) for key, rule in TARGETS.items() if key in out}
    return out


def _meets(value: float | None, op: str, bound: float) -> bool | None:
    if value is None:
        return None
    return value <= bound if op == "<=" else value >= bound


HEADLINE = (
    "turn_vs_unguarded", "turn_vs_unguarded_long", "ttft_checked_vs_ogx", "turn_vs_ogx", "guard_tokens_vs_ogx",
    "guard_cpu_share", "turn_ogx_vs_unguarded_long", "turn_ogx_vs_unguarded_second", "turn_vs_ogx_scenario",
    "turn_ogx_vs_unguarded", "ttft_checked_ogx_vs_unguarded",
    "ttft_checked_vs_unguarded", "turn_vs_llama_stack", "ttft_checked_vs_llama_stack",
    "concurrent8_throughput_vs_unguarded", "verdict_agreement", "turn_vs_llamafirewall",
    "ttft_checked_vs_llamafirewall", "ttft_checked_vs_llama_stack_shown", "turn_cpu_vs_unguarded",
    "turn_cpu_vs_llama_stack", "turn_cpu_vs_llamafirewall", "turn_llama_stack_vs_unguarded",
    "ttft_shown_llama_stack_vs_unguarded", "turn_llamafirewall_vs_unguarded",
)


def table(summary: dict[str, Any]) -> str:
    rows = [("mode", "first shown s", "first checked s", "turn s", "turn CPU s", "all turns s", "main prefill tok",
             "Llama Guard tok", "Prompt Guard tok")]
    for mode, f in summary["modes"].items():
        rows.append((
            mode, _fmt(f["ttft_shown_s"]), _fmt(f["ttft_checked_s"]), _fmt(f["turn_s"]), _fmt(f.get("turn_cpu_s")),
            _fmt(f["all_turns_s"]),
            str(f["main_prefill_tokens"]), str(f["llama_guard_tokens"]), str(f["prompt_guard_tokens"]),
        ))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = [
        "  ".join(cell.rjust(w) if i else cell.ljust(w) for i, (cell, w) in enumerate(zip(row, widths, strict=True)))
        for row in rows
    ]
    lines.insert(1, "  ".join("-" * w for w in widths))
    lines.append("")
    if "concurrent" in summary:
        c = summary["concurrent"]
        for mode in ("unguarded", "ours"):
            if mode in c:
                lines.append(f"{c.get('conversations', '?')} conversations at once, {mode}: {c[mode]['turns_per_s']} "
                             f"turns/s (wall {c[mode]['wall_s']} s for {c[mode]['turns']} turns)")
        lines.append("")
    if "lengths" in summary:
        lines += [length_table(summary["lengths"]), ""]
    for key in HEADLINE:
        if key in summary:
            target = TARGETS.get(key)
            note = ""
            if target:
                met = summary["targets"].get(key)
                note = f"   target {target[0]} {target[1]}: {'met' if met else 'MISSED'}"
            lines.append(f"{key:>38}: {summary[key]}{note}")
    return "\n".join(lines)


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"


def length_table(lengths: dict[str, dict[str, dict[str, Any]]]) -> str:
    """Growth with answer length: per mode and length, time to the last checked token (s) / guard tokens."""
    chars = sorted({int(k) for figures in lengths.values() for k in figures})
    rows = [("mode: last checked s / guard tokens", *(f"{c:,} chars" for c in chars))]
    for mode, figures in lengths.items():
        cells = [f"{_fmt(figures[str(c)]['last_checked_s'])} / {figures[str(c)]['guard_tokens']}"
                 if str(c) in figures else "-" for c in chars]
        rows.append((mode, *cells))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(cell.rjust(w) if i else cell.ljust(w) for i, (cell, w) in enumerate(zip(row, widths,
                                                                                                  strict=True)))
                     for row in rows)

"""bench/serve_load.py: the ratios from known runs, and a small real run (two `assistant serve` processes on the tiny
models, 2 streaming SDK clients, tool turns) that prints the keys and writes the load chart. Not timings."""

from __future__ import annotations

import io
import json
from contextlib import redirect_stdout
from pathlib import Path

from bench import serve_load
from bench.serve_load import LoadRun, TurnResult, ratios


def _run(mode: str, clients: int, wall: float, cpu: float, turn_s: float) -> LoadRun:
    turns = [TurnResult(i % 3, turn_s / 2, turn_s, "stop") for i in range(clients * 3)]
    return LoadRun(mode, clients, wall, cpu, turns)


def test_ratios_follow_the_definitions() -> None:
    # 96 turns each; unguarded: 10 s, 20 s of CPU; guarded: 12.5 s, 25 s of CPU (1.25x the CPU per turn).
    runs = [_run("unguarded", 32, 10.0, 20.0, 2.0), _run("guarded", 32, 12.5, 25.0, 2.4)]
    out = ratios(runs)
    assert out["serve32_throughput_vs_unguarded"] == 0.8
    # the CPU-bound limit is unguarded turns/s x 20/25: guarded reached exactly it
    assert out["serve32_throughput_vs_cpu_bound"] == 1.0
    assert out["serve32_p95_turn_vs_unguarded"] == 1.2
    assert out["serve32_guard_cpu_share"] == out["guard_cpu_share"] == 0.2


def test_policies_differ_only_in_the_guards(bench_models, tmp_path: Path) -> None:
    from guards.policy import load_policy

    sizes = serve_load.SIZES["tiny"]
    texts = {m: serve_load.policy_text(m, bench_models, sizes, tmp_path / "a.jsonl", 32) for m in serve_load.MODES}
    for mode, text in texts.items():
        (tmp_path / f"{mode}.yaml").write_text(text, encoding="utf-8")
        policy = load_policy(tmp_path / f"{mode}.yaml")
        assert policy.server.max_concurrent_turns == 32
    changed = [a for a, b in zip(texts["unguarded"].splitlines(), texts["guarded"].splitlines(), strict=True) if a != b]
    assert changed and all("enabled: false" in line for line in changed)
    batched = [b for a, b in zip(texts["guarded"].splitlines(), texts["batched"].splitlines(), strict=True) if a != b]
    assert batched == [line for line in texts["batched"].splitlines() if "batch_checks: 8" in line]


def test_batched_ratios_compare_with_the_guarded_server() -> None:
    runs = [_run("guarded", 8, 10.0, 20.0, 2.0), _run("batched", 8, 8.0, 18.0, 1.5)]
    out = ratios(runs)
    assert out["serve8_batched_throughput_vs_guarded"] == 1.25
    assert out["serve8_batched_p95_turn_vs_guarded"] == 0.75
    assert out["serve8_batched_cpu_per_turn_vs_guarded"] == 0.9
    assert "serve8_throughput_vs_unguarded" not in out  # no unguarded server in this run


def test_small_real_run_prints_the_keys_and_the_chart(bench_models, tiny_models_cache: Path, tmp_path: Path) -> None:
    chart = tmp_path / "load.png"
    out = io.StringIO()
    with redirect_stdout(out):
        code = serve_load.main(["--json", "--size", "tiny", "--clients", "2", "--models", str(tiny_models_cache),
                                "--chart", str(chart)])
    assert code == 0
    summary = json.loads(out.getvalue())
    for key in ("serve2_throughput_vs_cpu_bound", "serve2_throughput_vs_unguarded", "serve2_p95_turn_vs_unguarded",
                "serve2_guard_cpu_share"):
        assert isinstance(summary[key], float), key
    assert {run["mode"] for run in summary["runs"]} == {"unguarded", "guarded"}  # the batched server: --modes
    for run in summary["runs"]:
        assert run["turns"] == 6 and run["finish"] == {"stop": 6}, run  # every turn answered, tool turns included
        assert run["cpu_per_turn_s"] > 0 and run["ttft_p50_s"] <= run["turn_p50_s"]
    assert chart.stat().st_size > 10_000 and chart.read_bytes()[:4] == b"\x89PNG"

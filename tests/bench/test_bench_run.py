"""The whole benchmark in miniature (tiny scenario, one repeat, 8 conversations of one turn): it runs, every guarded
mode decides alike, nothing blocked reaches an event, `--json` carries the keys issue 18 names and the chart is
written. Timings are not asserted (shared machine)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bench import turn
from bench.scenario import Sizes, build_scenario

KEYS = ("turn_vs_unguarded", "ttft_checked_vs_unguarded", "turn_vs_llama_stack", "ttft_checked_vs_llama_stack",
        "concurrent8_throughput_vs_unguarded", "verdict_agreement",
        # the first performance issue's keys (CONTRACTS.md: `bench/turn.py --json`)
        "ttft_optimized_vs_reference", "turn_optimized_vs_unguarded", "prefill_optimized_vs_reference")
GUARDED = ("llama-stack", "llamafirewall", "ours")


@pytest.fixture(scope="module")
def run(tiny_models_cache: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[dict, Path]:
    import io
    from contextlib import redirect_stdout

    chart = tmp_path_factory.mktemp("chart") / "bench.png"
    out = io.StringIO()
    with redirect_stdout(out):
        code = turn.main(["--json", "--small", "--repeats", "1", "--no-firewall", "--models", str(tiny_models_cache),
                          "--concurrent", "8", "--concurrent-turns", "2:3", "--chart", str(chart)])
    assert code == 0
    return json.loads(out.getvalue()), chart


@pytest.fixture(scope="module")
def summary(run: tuple[dict, Path]) -> dict:
    return run[0]


def test_json_has_the_contract_keys(summary: dict) -> None:
    for key in KEYS:
        assert isinstance(summary[key], float), key
    assert summary["threads"] == summary["machine_before"]["torch_threads"]  # one budget for every mode


def test_modes_agree_and_block_where_the_scenario_says(summary: dict) -> None:
    assert summary["verdict_agreement"] == 1.0, summary["verdict_disagreements"]
    assert set(summary["verdict_agreement_by_peer"]) == {"llama-stack", "llamafirewall"}
    expected = [t.expect for t in build_scenario(Sizes.tiny()).turns]
    for mode in GUARDED:
        outcomes = summary["modes"][mode]["outcomes"]
        assert outcomes == [
            {"answer": "final", "input_block": "refusal:user_input", "output_block": "refusal:model_output"}[e]
            for e in expected
        ], mode
        assert summary["modes"][mode]["leaks"] == 0
    assert summary["modes"]["unguarded"]["outcomes"] == ["final"] * len(expected)
    # Llama Stack shields no tool result inside a turn: fewer check points than LlamaFirewall's.
    points = summary["verdict_checkpoints"]
    assert points["llama-stack"] < points["llamafirewall"]


def test_every_mode_reuses_the_main_models_cache(summary: dict) -> None:
    story = 2  # a turn without tools: only the user's message and the headers around it are new
    for mode, figures in summary["modes"].items():
        assert figures["main_prefill_per_turn"][story] < 60 < figures["main_prompt_per_turn"][story], mode


def test_llama_stack_shows_text_before_checking_it(summary: dict) -> None:
    llama_stack = summary["modes"]["llama-stack"]
    assert llama_stack["ttft_shown_s"] < llama_stack["ttft_checked_s"]
    for mode in ("unguarded", "llamafirewall", "ours"):
        assert summary["modes"][mode]["ttft_shown_s"] == summary["modes"][mode]["ttft_checked_s"], mode


def test_concurrent_conversations_all_answer(summary: dict) -> None:
    concurrent = summary["concurrent"]
    assert concurrent["conversations"] == 8
    for mode in ("unguarded", "ours"):
        assert concurrent[mode]["turns"] == 8 and concurrent[mode]["outcomes"] == ["final"], mode


def test_chart_is_a_png(run: tuple[dict, Path]) -> None:
    summary, chart = run
    assert summary["chart"] == str(chart)
    assert chart.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

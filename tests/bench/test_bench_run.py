"""The whole benchmark in miniature (tiny scenario, one repeat, the length family in miniature, 8 conversations of
one turn): it runs, every guarded mode decides alike, nothing blocked reaches an event, `--json` carries the keys
issues 18 and 31 name and both charts are written. Timings are not asserted (shared machine)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bench import turn
from bench.scenario import Sizes, build_scenario

KEYS = ("turn_vs_unguarded", "ttft_checked_vs_unguarded", "turn_vs_llama_stack", "ttft_checked_vs_llama_stack",
        "concurrent8_throughput_vs_unguarded", "verdict_agreement",
        # the first performance issue's keys (CONTRACTS.md: `bench/turn.py --json`)
        "ttft_optimized_vs_reference", "turn_optimized_vs_unguarded", "prefill_optimized_vs_reference",
        # issue 31
        "turn_vs_unguarded_long", "ttft_checked_vs_ogx", "turn_vs_ogx", "guard_tokens_vs_ogx", "guard_cpu_share")
GUARDED = ("ogx", "llama-stack", "llamafirewall", "ours")


@pytest.fixture(scope="module")
def run(tiny_models_cache: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[dict, Path]:
    import io
    from contextlib import redirect_stdout

    chart = tmp_path_factory.mktemp("chart") / "bench.png"
    out = io.StringIO()
    with redirect_stdout(out):
        code = turn.main(["--json", "--small", "--repeats", "1", "--no-firewall", "--models", str(tiny_models_cache),
                          "--concurrent", "8", "--concurrent-turns", "2:3", "--chart", str(chart),
                          "--length-repeats", "1", "--length-chart", str(chart.with_name("length.png"))])
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
    assert set(summary["verdict_agreement_by_peer"]) == {"ogx", "llama-stack", "llamafirewall"}
    expected = [t.expect for t in build_scenario(Sizes.tiny()).turns]
    for mode in GUARDED:
        outcomes = summary["modes"][mode]["outcomes"]
        assert outcomes == [
            {"answer": "final", "input_block": "refusal:user_input", "output_block": "refusal:model_output"}[e]
            for e in expected
        ], mode
        assert summary["modes"][mode]["leaks"] == 0
    assert summary["modes"]["unguarded"]["outcomes"] == ["final"] * len(expected)
    # Neither OGX nor Llama Stack guards a tool result inside a turn: fewer check points than LlamaFirewall's.
    points = summary["verdict_checkpoints"]
    assert points["llama-stack"] < points["llamafirewall"] and points["ogx"] < points["llamafirewall"]


def test_every_mode_reuses_the_main_models_cache(summary: dict) -> None:
    story = 2  # a turn without tools: only the user's message and the headers around it are new
    for mode, figures in summary["modes"].items():
        assert figures["main_prefill_per_turn"][story] < 60 < figures["main_prompt_per_turn"][story], mode


def test_llama_stack_shows_text_before_checking_it(summary: dict) -> None:
    llama_stack = summary["modes"]["llama-stack"]
    assert llama_stack["ttft_shown_s"] < llama_stack["ttft_checked_s"]
    for mode in ("unguarded", "ogx", "llamafirewall", "ours"):
        assert summary["modes"][mode]["ttft_shown_s"] == summary["modes"][mode]["ttft_checked_s"], mode


def test_concurrent_conversations_all_answer(summary: dict) -> None:
    concurrent = summary["concurrent"]
    assert concurrent["conversations"] == 8
    for mode in ("unguarded", "ours"):
        assert concurrent[mode]["turns"] == 8 and concurrent[mode]["outcomes"] == ["final"], mode


def test_charts_are_pngs(run: tuple[dict, Path]) -> None:
    summary, chart = run
    assert summary["chart"] == str(chart) and summary["length_chart"] == str(chart.with_name("length.png"))
    for path in (chart, chart.with_name("length.png")):
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_length_family_answers_every_length_and_checks_grow_with_it(summary: dict) -> None:
    lengths = [str(n) for n in Sizes.tiny().lengths]
    for mode in ("unguarded", "ogx", "llama-stack", "llamafirewall", "ours"):
        figures = summary["lengths"][mode]
        assert list(figures) == lengths, mode
        assert all(figures[n]["outcome"] == "final" and figures[n]["last_checked_s"] > 0 for n in lengths), mode
    ogx, stack = summary["lengths"]["ogx"], summary["lengths"]["llama-stack"]
    # OGX checks the accumulated answer every 200 characters and once more at its end; Llama Stack once, at the end.
    assert [ogx[n]["checks"] for n in lengths] == [1, 2, 3, 5]
    assert [stack[n]["checks"] for n in lengths] == [1, 1, 1, 1]
    assert [ogx[n]["guard_tokens"] for n in lengths] == sorted(ogx[n]["guard_tokens"] for n in lengths)
    assert ogx[lengths[-1]]["llama_guard_tokens"] > stack[lengths[-1]]["llama_guard_tokens"]
    assert summary["length_chars"] == {"long": 800, "second": 400}

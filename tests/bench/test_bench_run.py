"""The whole benchmark in miniature (tiny scenario, one repeat): it runs, the modes decide alike, nothing blocked
reaches an event, and `--json` carries the keys the issue names. Timings are not asserted (shared machine)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bench import turn
from bench.scenario import Sizes, build_scenario

KEYS = ("ttft_optimized_vs_reference", "turn_optimized_vs_unguarded", "prefill_optimized_vs_reference",
        "verdict_agreement")  # fmt: skip


@pytest.fixture(scope="module")
def summary(tiny_models_cache: Path) -> dict:
    import io
    from contextlib import redirect_stdout

    out = io.StringIO()
    with redirect_stdout(out):
        code = turn.main(["--json", "--small", "--repeats", "1", "--no-firewall", "--models", str(tiny_models_cache)])
    assert code == 0
    return json.loads(out.getvalue())


def test_json_has_the_contract_keys(summary: dict) -> None:
    for key in KEYS:
        assert isinstance(summary[key], float), key


def test_modes_agree_and_block_where_the_scenario_says(summary: dict) -> None:
    assert summary["verdict_agreement"] == 1.0, summary["verdict_disagreements"]
    expected = [t.expect for t in build_scenario(Sizes.tiny()).turns]
    for mode in ("reference", "optimized"):
        outcomes = summary["modes"][mode]["outcomes"]
        assert outcomes == [
            {"answer": "final", "input_block": "refusal:user_input", "output_block": "refusal:model_output"}[e]
            for e in expected
        ], mode
        assert summary["modes"][mode]["leaks"] == 0
    assert summary["modes"]["unguarded"]["outcomes"] == ["final"] * len(expected)


def test_cache_reuse_cuts_prefill(summary: dict) -> None:
    modes = summary["modes"]
    assert modes["optimized"]["main_prefill_tokens"] < modes["reference"]["main_prefill_tokens"]
    assert modes["reference"]["main_prefill_tokens"] == modes["reference"]["main_prompt_tokens"]  # nothing reused
    assert modes["optimized"]["llama_guard_tokens"] < modes["reference"]["llama_guard_tokens"]


def test_later_turns_prefill_only_their_new_tokens(summary: dict) -> None:
    optimized = summary["modes"]["optimized"]
    story = 2  # a turn without tools: only the user's message and the headers around it are new
    assert optimized["main_prefill_per_turn"][story] < 60 < optimized["main_prompt_per_turn"][story]

"""The benchmark's parts on tiny sizes: the teacher-forced backend, the scenario, the report. Not timings."""

from __future__ import annotations

import pytest

from bench.forced import ForcedBackend, completion_ids
from bench.harness import TurnRecord, checkpoints_of
from bench.report import agreement, summarize
from bench.scenario import JAILBREAK, UNSAFE, Sizes, build_scenario, tool_call
from model.backends.base import GenerationParams


async def _complete(backend: ForcedBackend, prompt: list[int]) -> str:
    return "".join([d async for d in backend.stream(prompt, GenerationParams())])


@pytest.mark.parametrize("reuse", [True, False])
async def test_forced_backend_emits_the_script_and_reuses_the_cache(bench_models, reuse: bool) -> None:
    from model.tokenizer import get_tokenizer

    backend = ForcedBackend(str(bench_models.main), reuse_cache=reuse)
    call = tool_call("report")
    answer = "The report says the water is warm.<|eot_id|>"
    backend.set_script([call, answer])
    tokenizer = get_tokenizer(bench_models.main)

    def header(role: str) -> list[int]:
        start, end = tokenizer.special_id("<|start_header_id|>"), tokenizer.special_id("<|end_header_id|>")
        return [start, *tokenizer.encode(role), end, *tokenizer.encode("\n\n")]

    prompt = [128000, *header("user"), *tokenizer.encode("user asks a question"), 128009, *header("assistant")]
    assert await _complete(backend, prompt) == call
    # The next step's prompt re-encodes the completion verbatim, then adds a tool result.
    generated = completion_ids(call, tokenizer)
    follow = [*prompt, *generated, *header("ipython"), *tokenizer.encode("tool result text"), 128009,
              *header("assistant")]
    assert await _complete(backend, follow) == answer
    assert await _complete(backend, prompt) == call  # the step, not the call count, picks the completion
    first, second, _ = backend.calls
    assert first.prefill_tokens == len(prompt) and first.generated_tokens == len(generated)
    if reuse:  # everything but the stop token (never fed back) came from the cache
        assert second.prefill_tokens == len(follow) - (len(prompt) + len(generated) - 1)
    else:
        assert second.prefill_tokens == len(follow)


def test_forced_backend_needs_a_stop_token(bench_models) -> None:
    with pytest.raises(ValueError, match="stop token"):
        ForcedBackend(str(bench_models.main)).set_script(["no stop"])


def test_scenario_is_fixed_and_holds_its_triggers() -> None:
    one, two = build_scenario(Sizes.tiny()), build_scenario(Sizes.tiny())
    assert one == two
    assert [t.expect for t in one.turns].count("answer") == 3
    assert sum(t.tool_calls for t in one.turns) == 3
    assert JAILBREAK in one.turns[3].user and UNSAFE in one.turns[4].completions[0]
    assert all(JAILBREAK not in p and UNSAFE not in p for p in one.pages.values())


def _verdict(stage: str, decision: str, error: str | None = None):
    from assistant.events import GuardVerdict

    return GuardVerdict(stage=stage, guard="llama_guard", decision=decision, error=error)


def test_checkpoints_collapse_streamed_chunks_and_count_errors_as_blocks() -> None:
    from assistant.events import Final, TokenDelta, ToolResult

    events = [
        _verdict("user_input", "allow"), _verdict("user_input", "allow"),
        ToolResult(call_id="c", name="fetch_page", ok=True, output="x"),
        _verdict("tool_result", "allow"), ToolResult(call_id="d", name="fetch_page", ok=True, output="y"),
        _verdict("tool_result", "allow", error="boom"),
        _verdict("model_output", "allow"), TokenDelta(text="a"), _verdict("model_output", "warn"), TokenDelta(text="b"),
        Final(text="ab"),
    ]
    assert checkpoints_of(events) == [
        ("user_input", "allow"), ("tool_result", "allow"), ("tool_result", "allow"), ("model_output", "warn"),
    ]
    events[5] = _verdict("tool_result", "block", error="boom")
    assert checkpoints_of(events)[2] == ("tool_result", "block")


def _record(mode: str, turn: int, points: list[tuple[str, str]], outcome: str = "final", **kw: float) -> TurnRecord:
    return TurnRecord(
        mode=mode, repeat=0, turn=turn, expect="answer", turn_s=kw.get("turn_s", 1.0), ttft_s=kw.get("ttft_s", 1.0),
        ttft_shown_s=kw.get("shown", kw.get("ttft_s", 1.0)), main_prompt=100, main_prefill=int(kw.get("prefill", 100)),
        main_generated=10, llama_guard_tokens=int(kw.get("lg", 0)), prompt_guard_tokens=0, checkpoints=points,
        outcome=outcome, shown="", leaked=False, cpu_s=kw.get("cpu", 1.0), guard_cpu_s=kw.get("guard_cpu", 0.0),
        last_checked_s=kw.get("last", kw.get("turn_s", 1.0)), family="lengths" if "length" in kw else "scenario",
    )


def test_agreement_and_ratios() -> None:
    stack = [_record("llama-stack", 0, [("user_input", "allow"), ("model_output", "allow")], turn_s=4.0, ttft_s=4.0,
                     shown=1.0)]
    firewall = [_record("llamafirewall", 0, [("user_input", "allow"), ("tool_result", "allow"),
                                              ("model_output", "allow")], turn_s=2.0, ttft_s=2.0)]
    ours = [_record("ours", 0, [("user_input", "allow"), ("tool_result", "allow"), ("model_output", "allow")],
                    turn_s=1.1, ttft_s=1.0)]
    unguarded = [_record("unguarded", 0, [], turn_s=1.0, ttft_s=0.5)]
    summary = summarize(stack + firewall + ours + unguarded)
    # Llama Stack checks no tool result: only the stages both modes check are compared.
    assert summary["verdict_agreement"] == 1.0 and summary["verdict_checkpoints"] == {"llama-stack": 3,
                                                                                       "llamafirewall": 4}
    assert summary["ttft_checked_vs_llama_stack"] == 0.25 and summary["ttft_checked_vs_llama_stack_shown"] == 1.0
    assert summary["turn_vs_unguarded"] == 1.1 and summary["ttft_checked_vs_unguarded"] == 2.0
    assert summary["turn_vs_llamafirewall"] == 0.55
    assert summary["targets"]["turn_vs_unguarded"] and "ttft_checked_vs_unguarded" not in summary["targets"]
    blocked = [_record("ours", 0, [("user_input", "block")], outcome="refusal:user_input")]
    share, points, problems = agreement(stack, blocked)
    assert share == 0.0 and points == 2 and len(problems) == 2


def test_length_family_keys() -> None:
    """The issue-31 keys: the longest answer against unguarded (the better of its two runs) and OGX, the second
    longest against OGX; the scenario's turn ratio against OGX is kept beside them under its own name."""
    records = [_record("ours", 0, [], turn_s=2.0, ttft_s=0.5, cpu=2.0, guard_cpu=0.5),
               _record("ogx", 0, [], turn_s=4.0, ttft_s=1.0), _record("unguarded", 0, [], turn_s=1.9, ttft_s=0.4)]
    for index, (ours, ogx, ung, every) in enumerate(((1.0, 1.2, 0.9, 0.95), (4.2, 4.5, 4.0, 3.5))):
        records += [_record("ours", index, [], turn_s=ours, lg=600 * (index + 1), length=1),
                    _record("ogx", index, [], turn_s=ogx, lg=1000 * (index + 1), length=1),
                    _record("unguarded", index, [], turn_s=ung, length=1),
                    _record("unguarded-all-cores", index, [], turn_s=every, length=1)]
    summary = summarize(records, (), (4000, 16000))
    assert summary["length_chars"] == {"long": 16000, "second": 4000}
    assert summary["turn_vs_unguarded_long"] == 1.2 and summary["turn_vs_ogx"] == round(1.0 / 1.2, 4)
    assert summary["guard_tokens_vs_ogx"] == 0.6 and summary["turn_vs_ogx_scenario"] == 0.5
    assert summary["ttft_checked_vs_ogx"] == 0.5 and summary["guard_cpu_share"] == 0.25
    assert summary["lengths"]["ogx"]["16000"]["llama_guard_tokens"] == 2000
    assert summary["targets"]["guard_tokens_vs_ogx"] and not summary["targets"]["turn_vs_unguarded_long"]


def test_length_answers_have_their_length() -> None:
    scenario = build_scenario()
    assert [len(t.completions[0].removesuffix("<|eot_id|>")) for t in scenario.lengths] == [200, 1000, 4000, 16000]
    assert len({t.user for t in (*scenario.turns, *scenario.lengths)}) == 9  # the forced script is keyed by them
    assert all(UNSAFE not in t.completions[0] and JAILBREAK not in t.completions[0] for t in scenario.lengths)


def test_throughput_ratio() -> None:
    from bench.harness import ConcurrentRun
    from bench.report import throughput

    runs = [ConcurrentRun("unguarded", 8, 24, 10.0, ["final"] * 24), ConcurrentRun("ours", 8, 24, 12.5, ["final"] * 24)]
    out = throughput(runs)
    assert out["concurrent8_throughput_vs_unguarded"] == 0.8 and out["ours"]["turns_per_s"] == 1.92



def test_guard_isolation_decodes_with_the_installed_transformers(bench_models) -> None:
    """`bench/guard_isolation.py`'s decoding loop (run whole by `make bench`) on the tiny main model."""
    from bench.guard_isolation import decode_s
    from guards.llama_guard.guard import load_causal_lm

    assert decode_s(load_causal_lm(str(bench_models.main)), 3) > 0

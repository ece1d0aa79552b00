"""The stage runner's mechanics: concurrency, first block cancels, fail-closed errors and timeouts, audit records.

Runners here are small stand-ins with controlled timing (the real guards are exercised end to end in tests/agent).
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from guards.audit.log import verify_audit_log
from guards.policy import parse_policy_text
from guards.runtime.pipeline import GuardPipeline
from guards.runtime.runner import CheckInput
from guards.verdict import Verdict

POLICY = """\
version: 1
stages:
  user_input: {llama_guard: {enabled: true}, prompt_guard: {enabled: true}}
  model_output: {llama_guard: {enabled: false}, code_shield: {enabled: false}}
"""


class Runner:
    def __init__(self, name: str, decision: str = "allow", delay: float = 0.0, *, error: Exception | None = None,
                 timeout_s: float = 5.0, on_error: str = "block", result: object = None) -> None:
        self.name, self.decision, self.delay, self.error = name, decision, delay, error
        self.timeout_s, self.on_error, self.result = timeout_s, on_error, result
        self.finished = False

    def load(self) -> None:
        """Nothing to load (the GuardRunner protocol's warm-up)."""

    async def check(self, item: CheckInput) -> Verdict:
        await asyncio.sleep(self.delay)
        if self.error is not None:
            raise self.error
        self.finished = True
        if self.result is not None:
            return self.result  # type: ignore[return-value]
        return Verdict(item.stage, self.name, self.decision)  # type: ignore[arg-type]


def pipeline(*runners: Runner, audit=None) -> GuardPipeline:
    return GuardPipeline(parse_policy_text(POLICY), {r.name: r for r in runners}, audit=audit)


async def test_guards_run_concurrently_and_all_verdicts_are_kept() -> None:
    pipe = pipeline(Runner("prompt_guard", delay=0.2), Runner("llama_guard", delay=0.2))
    started = time.perf_counter()
    result = await pipe.check("user_input", "hello")
    assert time.perf_counter() - started < 0.35
    assert result.decision == "allow" and [v.guard for v in result.verdicts] == ["prompt_guard", "llama_guard"]


async def test_first_block_cancels_the_rest() -> None:
    slow = Runner("llama_guard", delay=2.0)
    pipe = pipeline(Runner("prompt_guard", "block", delay=0.01), slow)
    started = time.perf_counter()
    result = await pipe.check("user_input", "jailbreak")
    assert time.perf_counter() - started < 1.0
    assert result.decision == "block" and [v.guard for v in result.verdicts] == ["prompt_guard"]
    assert not slow.finished


@pytest.mark.parametrize(
    "runner",
    [
        Runner("llama_guard", error=RuntimeError("boom")),
        Runner("llama_guard", delay=1.0, timeout_s=0.05),
        Runner("llama_guard", result="safe"),
    ],
    ids=["exception", "timeout", "not-a-verdict"],
)
async def test_guard_failures_fail_closed(runner: Runner) -> None:
    result = await pipeline(Runner("prompt_guard"), runner).check("user_input", "hi")
    assert result.decision == "block" and result.error is not None
    failed = next(v for v in result.verdicts if v.guard == "llama_guard")
    assert failed.decision == "block" and failed.error


async def test_fail_open_only_when_written() -> None:
    result = await pipeline(Runner("prompt_guard"), Runner("llama_guard", error=OSError("x"), on_error="allow")).check(
        "user_input", "hi"
    )
    assert result.decision == "allow" and result.error is not None


async def test_missing_runner_blocks() -> None:
    result = await pipeline(Runner("prompt_guard")).check("user_input", "hi")
    assert result.decision == "block" and "no llama_guard guard" in (result.error or "")


async def test_disabled_stage_allows_without_verdicts() -> None:
    result = await pipeline(Runner("prompt_guard"), Runner("llama_guard")).check("model_output", "x")
    assert result.decision == "allow" and result.verdicts == ()


async def test_every_verdict_is_written_to_a_valid_audit_chain(tmp_path: Path) -> None:
    from guards.audit.log import AuditLog

    log = AuditLog(tmp_path / "audit.jsonl", texts="hash")
    pipe = pipeline(Runner("prompt_guard"), Runner("llama_guard", "warn"),
                    audit=lambda v, item: log.append_verdict(v, thread_id=item.thread_id, text=item.text))
    await pipe.check("user_input", "first", thread_id="t1")
    await pipe.check("user_input", "second", thread_id="t1")
    report = verify_audit_log(tmp_path / "audit.jsonl")
    assert report.intact
    lines = (tmp_path / "audit.jsonl").read_text().splitlines()
    assert len(lines) == 4 and "first" not in lines[0] and '"t1"' in lines[0]


# --- look-alike text (issue 12.11), through the real tiny guards ------------------------------------------------

LOOKALIKE_POLICY = """\
version: 1
stages:
  user_input: {llama_guard: {enabled: true}, prompt_guard: {enabled: true}}
  model_output: {llama_guard: {enabled: false}, code_shield: {enabled: false}}
"""


def _fullwidth(text: str) -> str:
    return "".join(chr(ord(c) + 0xFEE0) if "!" <= c <= "~" else c for c in text)


@pytest.fixture(scope="module")
def real_pipeline(tiny_guard_dirs: dict[str, Path]) -> GuardPipeline:
    dirs = {"llama_guard": tiny_guard_dirs["llama-guard"], "prompt_guard": tiny_guard_dirs["prompt-guard"]}
    return GuardPipeline.from_policy(parse_policy_text(LOOKALIKE_POLICY), model_dirs=dirs, audit=None)


@pytest.mark.parametrize(
    "variant",
    [
        _fullwidth,
        lambda word: "\u200b".join(word),  # zero-width spaces between the letters
        lambda word: word[:3] + "\u200d\u2060" + word[3:],  # zero-width joiner and word joiner
        lambda word: "\u202e" + word[:4] + "\u2066" + word[4:] + "\u2069\u202c",  # bidi controls
        lambda word: "\ufeff" + word.replace("t", "\U0001d42d"),  # BOM, mathematical bold t
    ],
    ids=["fullwidth", "zero_width_spaces", "joiners", "bidi_controls", "compatibility_letters"],
)
async def test_lookalike_variants_of_a_flagged_text_are_flagged(real_pipeline: GuardPipeline, variant) -> None:
    for trigger, guard in (("zyxtrigger", "llama_guard"), ("jbtrigger", "prompt_guard")):
        plain = await real_pipeline.check("user_input", f"please summarize {trigger} for me")
        assert plain.blocked and guard in {v.guard for v in plain.verdicts if v.decision == "block"}
        disguised = variant(trigger)
        assert disguised != trigger
        result = await real_pipeline.check("user_input", f"please summarize {disguised} for me")
        blocking = [v for v in result.verdicts if v.decision == "block"]
        assert result.blocked, (trigger, disguised, result)
        assert guard in {v.guard for v in blocking}
        if guard == "prompt_guard":  # the tiny Prompt Guard misses every variant of its trigger read literally
            assert any("look-alike" in reason for v in blocking for reason in v.reasons)


async def test_plain_text_is_checked_once_and_benign_lookalikes_pass(real_pipeline: GuardPipeline) -> None:
    calls: list[str] = []
    seen = Runner("llama_guard")
    original = seen.check

    async def spy(item: CheckInput) -> Verdict:
        calls.append(item.text)
        return await original(item)

    seen.check = spy  # type: ignore[method-assign]
    pipe = pipeline(seen, Runner("prompt_guard"))
    await pipe.check("user_input", "plain ascii text")
    assert calls == ["plain ascii text"]
    await pipe.check("user_input", "ｆｕｌｌ\u200bwidth")
    assert sorted(calls[1:]) == ["full\u200bwidth".replace("\u200b", ""), "ｆｕｌｌ\u200bwidth"]
    benign = await real_pipeline.check("user_input", "please summarize the ｗｅａｔｈｅｒ report\u200b")
    assert not benign.blocked


async def test_the_sequential_schedule_runs_one_guard_at_a_time_and_stops_at_a_block() -> None:
    """The benchmark's reference mode reuses `GuardPipeline.check` with this schedule (issue 14.6)."""
    from guards.runtime.pipeline import run_sequentially

    slow_block, later = Runner("prompt_guard", "block", delay=0.05), Runner("llama_guard")
    pipe = GuardPipeline(parse_policy_text(POLICY), {r.name: r for r in (slow_block, later)}, schedule=run_sequentially)
    result = await pipe.check("user_input", "x")
    assert result.blocked and [v.guard for v in result.verdicts] == ["prompt_guard"] and not later.finished
    allowed = GuardPipeline(parse_policy_text(POLICY), {"prompt_guard": Runner("prompt_guard", delay=0.05),
                            "llama_guard": Runner("llama_guard", delay=0.05)}, schedule=run_sequentially)
    started = time.perf_counter()
    assert not (await allowed.check("user_input", "x")).blocked
    assert time.perf_counter() - started >= 0.1

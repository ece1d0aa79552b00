"""The stage runner's mechanics: concurrency, first block cancels, fail-closed errors and timeouts, audit records.

Runners here are small stand-ins with controlled timing (the real guards are exercised end to end in tests/agent).
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from guards.audit import verify_audit_log
from guards.pipeline import CheckInput, GuardPipeline
from guards.policy import parse_policy_text
from guards.verdict import Verdict

POLICY = """\
version: 1
stages:
  user_input: {llama_guard: {enabled: true}, prompt_guard: {enabled: true}}
  model_output: {llama_guard: {enabled: false}, code_shield: {enabled: false}}
"""


class Runner:
    def __init__(self, name: str, decision: str = "allow", delay: float = 0.0, *, error: Exception | None = None,
                 timeout_s: float = 5.0, on_error: str = "block", result: object = None) -> None:  # fmt: skip
        self.name, self.decision, self.delay, self.error = name, decision, delay, error
        self.timeout_s, self.on_error, self.result = timeout_s, on_error, result
        self.finished = False

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
    from guards.audit import AuditLog

    log = AuditLog(tmp_path / "audit.jsonl", texts="hash")
    pipe = pipeline(Runner("prompt_guard"), Runner("llama_guard", "warn"),
                    audit=lambda v, item: log.append_verdict(v, thread_id=item.thread_id, text=item.text))  # fmt: skip
    await pipe.check("user_input", "first", thread_id="t1")
    await pipe.check("user_input", "second", thread_id="t1")
    report = verify_audit_log(tmp_path / "audit.jsonl")
    assert report.intact
    lines = (tmp_path / "audit.jsonl").read_text().splitlines()
    assert len(lines) == 4 and "first" not in lines[0] and '"t1"' in lines[0]

"""`guards.runtime.gate.judge`: stages decided in their row's order; the tool-result path's two stages run together, the
tool-call path's one after the other."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

from guards.runtime.gate import judge
from guards.verdict import StageResult, Verdict


class TimedPipeline:
    """A pipeline double: each stage answers `decision` after `delay` seconds; it records when each check started
    and which ones were cancelled."""

    def __init__(self, **stages: tuple[float, str]) -> None:
        self.stages = stages
        self.started: dict[str, float] = {}
        self.cancelled: list[str] = []

    async def check(self, stage: str, text: str, **_: Any) -> StageResult:
        self.started[stage] = time.perf_counter()
        delay, decision = self.stages[stage]
        try:
            await asyncio.sleep(delay)
        except asyncio.CancelledError:
            self.cancelled.append(stage)
            raise
        return StageResult.from_verdicts(stage, [Verdict(stage, "fake", decision)])


def run_judge(pipeline: TimedPipeline, path: str, **kwargs: Any) -> tuple[Any, float, list[str]]:
    seen: list[str] = []
    started = time.perf_counter()
    judgement = asyncio.run(judge(pipeline, path, "text", on_result=lambda r: seen.append(r.stage), **kwargs))
    return judgement, time.perf_counter() - started, seen


def test_tool_result_stages_run_together_and_are_reported_in_order() -> None:
    pipeline = TimedPipeline(tool_result=(0.3, "allow"), model_output=(0.3, "allow"))
    judgement, took, seen = run_judge(pipeline, "tool_result")
    assert judgement.passed and seen == ["tool_result", "model_output"]
    assert took < 0.5  # together: one delay, not two
    assert abs(pipeline.started["tool_result"] - pipeline.started["model_output"]) < 0.1


def test_a_later_stage_that_blocks_first_still_reports_the_row_order() -> None:
    pipeline = TimedPipeline(tool_result=(0.2, "allow"), model_output=(0.01, "block"))
    judgement, _, seen = run_judge(pipeline, "tool_result")
    assert judgement.outcome == "block" and judgement.stage == "model_output"
    assert seen == ["tool_result", "model_output"]


def test_an_earlier_stage_that_blocks_cancels_the_later_one_and_hides_its_verdict() -> None:
    pipeline = TimedPipeline(tool_result=(0.01, "block"), model_output=(5.0, "allow"))
    judgement, took, seen = run_judge(pipeline, "tool_result")
    assert judgement.outcome == "block" and judgement.stage == "tool_result"
    assert seen == ["tool_result"] and [r.stage for r in judgement.results] == ["tool_result"]
    assert pipeline.cancelled == ["model_output"] and took < 1.0


@pytest.mark.parametrize("first", ["block", "ask"])
def test_tool_call_stages_run_one_after_the_other(first: str) -> None:
    pipeline = TimedPipeline(tool_call=(0.05, first), code=(0.05, "allow"))
    judgement, _, seen = run_judge(pipeline, "tool_call", code="print(1)")
    if first == "block":  # the code never reaches Code Shield
        assert judgement.outcome == "block" and seen == ["tool_call"] and "code" not in pipeline.started
    else:  # asked: the code is still judged, after the call
        assert judgement.outcome == "ask" and seen == ["tool_call", "code"]
        assert pipeline.started["code"] - pipeline.started["tool_call"] >= 0.05

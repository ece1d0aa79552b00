"""Verdicts and how a stage combines them."""

from __future__ import annotations

import dataclasses
import json

import pytest

from guards.verdict import DECISIONS, StageResult, Verdict, combine_decisions


def test_decisions_are_ordered_by_severity() -> None:
    assert DECISIONS == ("allow", "log", "warn", "ask", "block")
    assert combine_decisions([]) == "allow"
    assert combine_decisions(["log", "allow"]) == "log"
    assert combine_decisions(["warn", "ask", "log"]) == "ask"
    assert combine_decisions(["ask", "block", "warn"]) == "block"


def test_unknown_decisions_are_rejected() -> None:
    with pytest.raises(ValueError, match="unknown decision 'deny'"):
        Verdict("code", "code_shield", "deny")  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        combine_decisions(["allow", "maybe"])


def test_verdict_is_frozen_and_serialises() -> None:
    verdict = Verdict("user_input", "llama_guard", "block", 0.93, ["S9"], ["unsafe"], 12.5)  # type: ignore[arg-type]
    assert verdict.categories == ("S9",)
    with pytest.raises(dataclasses.FrozenInstanceError):
        verdict.decision = "allow"  # type: ignore[misc]
    assert json.loads(verdict.to_json()) == {
        "stage": "user_input", "guard": "llama_guard", "decision": "block", "score": 0.93, "categories": ["S9"],
        "reasons": ["unsafe"], "latency_ms": 12.5, "error": None, "tokens": 0,
    }


def test_stage_result_from_verdicts_takes_the_worst_and_collects_errors() -> None:
    verdicts = [
        Verdict("model_output", "llama_guard", "allow", 0.01),
        Verdict("model_output", "code_shield", "block", error="semgrep crashed"),
        Verdict("model_output", "prompt_guard", "warn", 0.7),
    ]
    result = StageResult.from_verdicts("model_output", verdicts)
    assert (result.decision, result.blocked, result.error) == ("block", True, "code_shield: semgrep crashed")
    data = json.loads(result.to_json())
    assert [v["guard"] for v in data["verdicts"]] == ["llama_guard", "code_shield", "prompt_guard"]
    assert StageResult.from_verdicts("code", []).decision == "allow"

"""Typed guard verdicts and how a stage combines them.

Every guard check returns a `Verdict`; a stage (user_input, model_output, tool_call, tool_result, code) returns a
`StageResult` whose decision is the most severe of its verdicts. Both are frozen plain data with `to_json()`.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Literal, get_args

Decision = Literal["allow", "log", "warn", "ask", "block"]

DECISIONS: tuple[Decision, ...] = get_args(Decision)
# Severity order, lowest first: one blocking verdict blocks the stage, a human is asked before a mere warning.
_RANK: dict[str, int] = {decision: rank for rank, decision in enumerate(DECISIONS)}


def _check_decision(decision: str) -> None:
    _as_decision(decision)


def _as_decision(decision: str) -> Decision:
    """`decision` as a `Decision`; ValueError when it is not one."""
    for known in DECISIONS:
        if decision == known:
            return known
    raise ValueError(f"unknown decision {decision!r}; expected one of {', '.join(DECISIONS)}")


@dataclass(frozen=True)
class Verdict:
    """One guard's verdict on one text at one stage. `error` set means the guard failed (decision per on_error)."""

    stage: str
    guard: str
    decision: Decision
    score: float | None = None
    categories: tuple[str, ...] = ()
    reasons: tuple[str, ...] = ()
    latency_ms: float = 0.0
    error: str | None = None
    tokens: int = 0  # input tokens the guard's model read for this check (0: no model, or the check failed)

    def __post_init__(self) -> None:
        _check_decision(self.decision)
        # Lists from callers are frozen to tuples so the verdict stays hashable and immutable.
        object.__setattr__(self, "categories", tuple(self.categories))
        object.__setattr__(self, "reasons", tuple(self.reasons))

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["categories"] = list(self.categories)
        data["reasons"] = list(self.reasons)
        return data

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), ensure_ascii=False)


@dataclass(frozen=True)
class StageResult:
    """All verdicts of one stage and the decision they add up to. `error` summarises guard failures, if any."""

    stage: str
    decision: Decision
    verdicts: tuple[Verdict, ...] = ()
    error: str | None = None

    def __post_init__(self) -> None:
        _check_decision(self.decision)
        object.__setattr__(self, "verdicts", tuple(self.verdicts))

    @classmethod
    def from_verdicts(cls, stage: str, verdicts: Iterable[Verdict]) -> StageResult:
        verdicts = tuple(verdicts)
        errors = [f"{v.guard}: {v.error}" for v in verdicts if v.error is not None]
        return cls(stage, combine_decisions(v.decision for v in verdicts), verdicts, "; ".join(errors) or None)

    @property
    def blocked(self) -> bool:
        return self.decision == "block"

    def to_dict(self) -> dict[str, Any]:
        return {
            "stage": self.stage,
            "decision": self.decision,
            "verdicts": [v.to_dict() for v in self.verdicts],
            "error": self.error,
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), ensure_ascii=False)


def combine_decisions(decisions: Iterable[str]) -> Decision:
    """The most severe decision (block > ask > warn > log > allow); no decisions at all is `allow`."""
    worst: Decision = "allow"
    for decision in map(_as_decision, decisions):
        if _RANK[decision] > _RANK[worst]:
            worst = decision
    return worst

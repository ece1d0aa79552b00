"""What a guard check's span carries (docs/OBSERVABILITY.md): the stage, the guard, its threshold, the verdict.

Never the judged text: a guard judges text before anyone may see it, and blocked text never reaches a span. Nor a
guard error's message (an exception's message can quote what the guard was reading): only its kind, `error.type`.
"""

from __future__ import annotations

import re
from typing import Any

from guards.policy import Policy
from guards.verdict import Verdict

_ERROR_KIND = re.compile(r"^([A-Za-z_][A-Za-z0-9_.]*):")


def stage_attributes(stage: str, role: str, guards: list[str]) -> dict[str, Any]:
    return {"assistant.guard.stage": stage, "assistant.guard.role": role, "assistant.guard.guards": tuple(guards)}


def guard_attributes(policy: Policy, stage: str, name: str) -> dict[str, Any]:
    """The check's settings: which guard at which stage, and the score threshold it decides with (if it has one)."""
    on_stage = getattr(policy.stages.get(stage), name, None)
    threshold = getattr(on_stage, "threshold", None)
    if threshold is None:
        threshold = getattr(getattr(policy, name, None), "threshold", None)
    return {"assistant.guard.stage": stage, "assistant.guard.name": name,
            "assistant.guard.threshold": threshold if isinstance(threshold, int | float) else None}


def verdict_attributes(verdict: Verdict) -> dict[str, Any]:
    """The verdict: decision, score, categories, the guard's own latency and, for a failed guard, what failed."""
    out: dict[str, Any] = {
        "assistant.guard.decision": verdict.decision,
        "assistant.guard.score": verdict.score,
        "assistant.guard.categories": verdict.categories or None,
        "assistant.guard.latency_ms": verdict.latency_ms,
    }
    if verdict.error is not None:
        match = _ERROR_KIND.match(verdict.error)
        out["error.type"] = match.group(1) if match else "guard_error"
    return out


__all__ = ["guard_attributes", "stage_attributes", "verdict_attributes"]

"""What a guard check's span carries (docs/OBSERVABILITY.md): the stage, the guard, whose text, its threshold, the
verdict.

Never the judged text: a guard judges text before anyone may see it, and blocked text never reaches a span. Nor a
guard error's message (an exception's message can quote what the guard was reading): only its kind, `error.type`.
"""

from __future__ import annotations

import re
from typing import Any

from guards.policy import Policy
from guards.verdict import Verdict

_ERROR_KIND = re.compile(r"^([A-Za-z_][A-Za-z0-9_.]*):")


def guard_attributes(policy: Policy, stage: str, name: str, role: str) -> dict[str, Any]:
    """The check's settings: which guard at which stage on whose text, and the score threshold it decides with (if
    it has one). `assistant.guard.cached` is always false: no verdict is ever reused (every check runs its guard;
    Llama Guard's reuse of a conversation's KV cache is a cheaper forward pass, not a stored verdict)."""
    on_stage = getattr(policy.stages.get(stage), name, None)
    threshold = getattr(on_stage, "threshold", None)
    if threshold is None:
        threshold = getattr(getattr(policy, name, None), "threshold", None)
    attributes = {"assistant.guard.stage": stage, "assistant.guard.name": name, "assistant.guard.role": role,
                  "assistant.guard.cached": False}
    if isinstance(threshold, int | float):
        attributes["assistant.guard.threshold"] = threshold
    return attributes


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


__all__ = ["guard_attributes", "verdict_attributes"]

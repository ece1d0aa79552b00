"""What one Llama Guard check found (`LlamaGuardResult`) and how a score, the model's first token and the verdict
text decoded become it (`decide`): the same for the in-process and the remote guard."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from guards.errors import GuardOutputError
from guards.llama_guard.prompt import parse_verdict

Mode = Literal["forward", "generate"]
MAX_CATEGORY_TOKENS = 32  # `\nS1,S2,...` for every category fits easily


@dataclass(frozen=True)
class LlamaGuardResult:
    unsafe: bool  # the decision after threshold and exclusions
    score: float  # P(first token == "unsafe")
    categories: tuple[str, ...] = ()  # codes the model named (empty when safe)
    model_verdict: Literal["safe", "unsafe"] = "safe"  # the model's own first token
    text: str = ""  # the verdict text decoded ("safe" when not decoded)
    reasons: tuple[str, ...] = ()
    mode: Mode = "forward"
    prompt_tokens: int = 0
    cached_tokens: int = 0
    latency_ms: float = 0.0


@dataclass(frozen=True)
class Scoring:
    """How a check was scored, for its result: the mode and the prompt's token counts."""

    mode: Mode
    prompt_tokens: int
    cached_tokens: int = 0


def decide(
    score: float, verdict: Literal["safe", "unsafe"], text: str, scoring: Scoring, threshold: float,
    excluded: frozenset[str],
) -> LlamaGuardResult:
    """The result of one check from P(unsafe), the model's first token and the verdict text decoded; the same for
    the in-process and the remote guard."""

    def result(unsafe: bool, text: str, reasons: tuple[str, ...], categories: tuple[str, ...] = ()) -> LlamaGuardResult:
        return LlamaGuardResult(unsafe=unsafe, score=score, categories=categories, model_verdict=verdict, text=text,
                                reasons=reasons, mode=scoring.mode, prompt_tokens=scoring.prompt_tokens,
                                cached_tokens=scoring.cached_tokens)

    if score < threshold:
        reasons = () if verdict == "safe" else (f"model answered unsafe but P(unsafe)={score:.4f} < threshold",)
        return result(False, "safe" if verdict == "safe" else text, reasons)
    parsed = parse_verdict(text)
    if parsed is None or not parsed.unsafe:
        if verdict == "unsafe":
            raise GuardOutputError(f"Llama Guard answered {text!r}, neither 'safe' nor 'unsafe\\nS<n>,...'")
        # The threshold (not the model) made it unsafe and the forced continuation names no category.
        reason = f"P(unsafe)={score:.4f} >= threshold {threshold}; no category decoded"
        return result(True, text, (reason,))
    categories = parsed.categories
    if excluded and set(categories) <= excluded:
        # Only categories the policy excluded: not a violation (llama-stack's rule).
        reason = f"only excluded categories: {','.join(categories)}"
        return result(False, text, (reason,), categories)
    reason = f"unsafe ({','.join(categories)}), P(unsafe)={score:.4f}"
    return result(True, text, (reason,), categories)

"""`llama_guard`, `prompt_guard` and `code_shield`: how each guard scores and what its verdicts lead to."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, StringConstraints, model_validator

from guards.policy.base import (
    SINGLE_LINE_PATTERN,
    Action,
    CategoryCode,
    CodeShieldAction,
    NonEmptyStr,
    OnError,
    PolicyModel,
    PositiveInt,
    Probability,
    Seconds,
)

# Text that would break the Llama Guard prompt's structure if a category carried it.
_PROMPT_MARKERS = ("<|", "|>", "BEGIN UNSAFE CONTENT CATEGORIES", "END UNSAFE CONTENT CATEGORIES", "BEGIN CONVERSATION")
SingleLine = Annotated[str, StringConstraints(strict=True, min_length=1, pattern=SINGLE_LINE_PATTERN)]


class CustomCategory(PolicyModel):
    """A deployer's own category. A built-in code redefines that category; a new code (S15, ... for 8b) is added."""

    code: CategoryCode
    name: SingleLine
    description: NonEmptyStr

    @model_validator(mode="after")
    def _no_prompt_markers(self) -> CustomCategory:
        for marker in _PROMPT_MARKERS:
            if marker in self.name or marker in self.description:
                raise ValueError(f"name and description must not contain {marker!r} (it would break the guard prompt)")
        return self


class GuardSettings(PolicyModel):
    """What every guard's own section (`<guard>:`) has: what its failure leads to, and how long a check may take."""

    on_error: OnError = "block"
    timeout_s: Seconds = 30.0


class LlamaGuardConfig(GuardSettings):
    categories: tuple[CategoryCode, ...] | None = None  # enabled codes; None = every category of the variant
    excluded: tuple[CategoryCode, ...] = ()
    custom: tuple[CustomCategory, ...] = ()
    threshold: Probability = 0.5  # P(first generated token is `unsafe`) at or above which the verdict is unsafe
    action: Action = "block"
    category_actions: dict[CategoryCode, Action] = Field(default_factory=dict)  # per code, overrides `action`
    on_error: OnError = "block"
    timeout_s: Seconds = 30.0
    # KV caches of recent checks kept per role (local model): with one per conversation served at once, each
    # conversation's next check prefills only its new text; each cache holds its conversation's tokens.
    cached_conversations: PositiveInt = 1
    # Checks of different conversations waiting at once in the guard process (models.llama_guard.process: true),
    # scored in one forward pass, each on its own cached conversation: at most this many (1: one at a time); the
    # first waits up to batch_wait_ms for others to join (0: only the checks already waiting, so a check alone never
    # waits). Llama Guard 3 only. 8: measured faster with 8 and 32 clients (docs/PERFORMANCE.md).
    batch_checks: PositiveInt = 8
    batch_wait_ms: float = Field(default=0.0, ge=0.0, le=1000.0)

    def action_for(self, codes: tuple[str, ...] | list[str]) -> Action:
        """The action for an unsafe verdict naming `codes`: the strictest of their per-category actions."""
        actions = [self.category_actions.get(code, self.action) for code in codes] or [self.action]
        return max(actions, key=ACTION_SEVERITY.__getitem__)


# How strongly an action stops the turn; used to combine several verdicts.
ACTION_SEVERITY: dict[str, int] = {"allow": 0, "log": 1, "warn": 2, "ask": 3, "block": 4}


class PromptGuardConfig(GuardSettings):
    window_tokens: int = Field(default=512, strict=True, gt=0, le=512)  # the model's maximum input length
    stride_tokens: PositiveInt = 256  # step between window starts (window - stride tokens overlap)
    # windows per forward pass; null: 2 on the CPU, 16 on an accelerator (guards.prompt_guard.guard.default_batch_size)
    batch_size: PositiveInt | None = None
    on_error: OnError = "block"
    timeout_s: Seconds = 10.0

    @model_validator(mode="after")
    def _windows_overlap(self) -> PromptGuardConfig:
        if self.stride_tokens >= self.window_tokens:
            raise ValueError(
                f"stride_tokens ({self.stride_tokens}) must be smaller than window_tokens ({self.window_tokens}) "
                "so that windows overlap and no text falls between two of them"
            )
        return self


class CodeShieldActions(PolicyModel):
    """Code Shield's recommended treatment -> our action. Its Python rules are all `warn`, never `block`."""

    block: CodeShieldAction = "block"
    warn: CodeShieldAction = "warn"
    ignore: CodeShieldAction = "allow"


# Code Shield's languages (codeshield.insecure_code_detector.languages.Language), written here to keep loading cheap.
CodeShieldLanguage = Literal[
    "c", "cpp", "csharp", "hack", "java", "javascript", "kotlin", "objective_c", "objective_cpp", "php", "python",
    "ruby", "rust", "swift", "xml",
]


class CodeShieldConfig(GuardSettings):
    actions: CodeShieldActions = CodeShieldActions()
    languages: tuple[CodeShieldLanguage, ...] | None = None  # None = every language Code Shield knows
    on_error: OnError = "block"
    timeout_s: Seconds = 60.0

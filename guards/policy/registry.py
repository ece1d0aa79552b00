"""The one declaration of every stage and every guard. Everything else iterates over `STAGES` and `GUARDS`: the
policy schema's `stages` and `refusals` sections, the pipeline's runners, the chat's warm-up, the CLI's choices, the
audit and the red-team tallies. A stage or guard name is written as a string here and nowhere else in the product
code (tests/test_registry_names.py); other modules use the constants below, and the `Literal` aliases let the type
checker guard every use.

Adding a guard: its package (`guards/<name>/`, with a runner factory) and a `GuardDeclaration` below; a guard with
settings of its own or per-stage options declares their sections too (`guards.policy.guards_config`,
`guards.policy.guard_stages`). docs/ARCHITECTURE.md has the recipe.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Final, Literal, get_args

from guards.policy.guard_stages import (
    CodeShieldStage,
    CodeStageCodeShield,
    GuardStage,
    LlamaGuardStage,
    PromptGuardStage,
    UserPromptGuardStage,
)
from guards.policy.guards_config import CodeShieldConfig, GuardSettings, LlamaGuardConfig, PromptGuardConfig

StageName = Literal["user_input", "model_output", "tool_call", "tool_result", "code"]
GuardName = Literal["prompt_guard", "llama_guard", "code_shield"]
# Whose text a stage reads, for Llama Guard's prompt: the user's (or a third party's) or the model's.
Role = Literal["user", "assistant"]

USER_INPUT: Final = "user_input"
MODEL_OUTPUT: Final = "model_output"
TOOL_CALL: Final = "tool_call"
TOOL_RESULT: Final = "tool_result"
CODE: Final = "code"

PROMPT_GUARD: Final = "prompt_guard"
LLAMA_GUARD: Final = "llama_guard"
CODE_SHIELD: Final = "code_shield"


@dataclass(frozen=True)
class StageDeclaration:
    name: StageName
    label: str  # how people read it ("user input")
    role: Role  # whose text the stage judges: a user's (or a third party's), or the model's
    refusal: str  # what a refused user reads by default (`refusals.<name>`)


@dataclass(frozen=True)
class GuardDeclaration:
    name: GuardName
    label: str  # how people read it ("Llama Guard")
    # `module:function(policy, source) -> GuardRunner`, imported only when a stage enables the guard, so policy tools
    # and `assistant --help` never import torch.
    runner: str
    stage_section: type[GuardStage] = GuardStage  # `stages.<stage>.<name>`
    # the per-stage section's default where it differs from `stage_section()` (enabled); a stage not named here gets
    # the guard switched off by default. A stage written without the guard's key keeps this default (fail closed).
    on_by_default: Mapping[StageName, GuardStage] = field(default_factory=dict)
    has_model: bool = False  # a model folder under `models.<name>` (resolved, downloaded, warmed up)
    settings: type[GuardSettings] = GuardSettings  # the guard's own section `<name>:` (timeout, on_error, ...)


STAGES: tuple[StageDeclaration, ...] = (
    StageDeclaration(USER_INPUT, "user input", "user", "I can't help with that request."),
    StageDeclaration(MODEL_OUTPUT, "model output", "assistant", "I can't share that response."),
    StageDeclaration(TOOL_CALL, "tool call", "assistant", "That tool call was blocked by the policy."),
    StageDeclaration(TOOL_RESULT, "tool result", "user", "A tool returned content that was blocked by the policy."),
    StageDeclaration(CODE, "code", "assistant", "The generated code was blocked by the policy."),
)

# In the order their verdicts appear in a stage's result (stable output).
GUARDS: tuple[GuardDeclaration, ...] = (
    GuardDeclaration(
        PROMPT_GUARD, "Prompt Guard", "guards.prompt_guard.runner:build_runner", PromptGuardStage,
        {USER_INPUT: UserPromptGuardStage(), TOOL_RESULT: PromptGuardStage()}, has_model=True,
        settings=PromptGuardConfig,
    ),
    GuardDeclaration(
        LLAMA_GUARD, "Llama Guard", "guards.llama_guard.runner:build_runner", LlamaGuardStage,
        {USER_INPUT: LlamaGuardStage(), MODEL_OUTPUT: LlamaGuardStage()}, has_model=True,
        settings=LlamaGuardConfig,
    ),
    GuardDeclaration(
        CODE_SHIELD, "Code Shield", "guards.code_shield.runner:build_runner", CodeShieldStage,
        {MODEL_OUTPUT: CodeShieldStage(), CODE: CodeStageCodeShield()}, settings=CodeShieldConfig,
    ),
)

STAGE_NAMES: tuple[StageName, ...] = tuple(stage.name for stage in STAGES)
GUARD_NAMES: tuple[GuardName, ...] = tuple(guard.name for guard in GUARDS)
MODEL_GUARDS: tuple[GuardName, ...] = tuple(guard.name for guard in GUARDS if guard.has_model)
_STAGES: dict[str, StageDeclaration] = {stage.name: stage for stage in STAGES}
_GUARDS: dict[str, GuardDeclaration] = {guard.name: guard for guard in GUARDS}


def stage_declaration(name: str) -> StageDeclaration:
    return _STAGES[name]  # a KeyError names the unknown stage


def guard_declaration(name: str) -> GuardDeclaration:
    return _GUARDS[name]  # a KeyError names the unknown guard


def guard_label(name: str) -> str:
    """`Llama Guard` for `llama_guard`; an unknown name as written (a test's own runner)."""
    return _GUARDS[name].label if name in _GUARDS else name


assert set(STAGE_NAMES) == set(get_args(StageName)) and set(GUARD_NAMES) == set(get_args(GuardName))

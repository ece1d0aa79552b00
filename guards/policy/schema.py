"""The policy file's schema: one `Policy` with a section per concern (see docs/POLICY_SPEC.md).

Every default is the fail-closed choice, so `version: 1` alone is a complete, safe policy.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal, TypeVar

from pydantic import ValidationInfo, create_model, model_validator

from guards.policy.agent_config import AgentConfig
from guards.policy.base import NonEmptyStr, PolicyModel
from guards.policy.categories import LlamaGuardCategory, categories_for_variant, code_number
from guards.policy.checks import consistency_problems, format_loc
from guards.policy.guards_config import CustomCategory, GuardSettings, LlamaGuardConfig
from guards.policy.images_config import ImagesConfig
from guards.policy.models import ModelsConfig
from guards.policy.registry import GUARDS, LLAMA_GUARD
from guards.policy.server_config import ServerConfig
from guards.policy.stages import AuditConfig, RefusalsConfig, StagesConfig
from guards.policy.storage_config import StorageConfig
from guards.policy.telemetry_config import TelemetryConfig
from guards.policy.tools_config import ToolsConfig

# Validation context key: the loader runs the cross-key checks itself, to point each problem at its own line.
DEFER_CONSISTENCY_CHECKS = "defer_consistency_checks"


SettingsT = TypeVar("SettingsT", bound=GuardSettings)


class PolicyHead(PolicyModel):
    """The sections before the guards' own (`<guard>:`, one per declared guard, made from the registry)."""

    version: Literal[1] = 1
    description: NonEmptyStr | None = None  # free text for the deployer's own notes
    models: ModelsConfig = ModelsConfig()

    def guard_settings(self, name: str, kind: type[SettingsT]) -> SettingsT:
        """The guard's own section, as the settings class its declaration names (`kind`, for the type checker)."""
        section = getattr(self, name)
        if not isinstance(section, kind):
            raise TypeError(f"the {name} section is a {type(section).__name__}, not a {kind.__name__}")
        return section


if TYPE_CHECKING:  # the type checker sees the head; the guard sections are made from the declarations at import
    WithGuardSections = PolicyHead
else:
    WithGuardSections = create_model(
        "PolicyWithGuardSections", __base__=PolicyHead, **{g.name: (g.settings, g.settings()) for g in GUARDS}
    )


class Policy(WithGuardSections):
    stages: StagesConfig = StagesConfig()
    refusals: RefusalsConfig = RefusalsConfig()
    audit: AuditConfig = AuditConfig()
    tools: ToolsConfig = ToolsConfig()
    agent: AgentConfig = AgentConfig()
    storage: StorageConfig = StorageConfig()  # where threads are kept (sqlite file or PostgreSQL)
    server: ServerConfig = ServerConfig()
    telemetry: TelemetryConfig = TelemetryConfig()  # OpenTelemetry traces (docs/OBSERVABILITY.md)
    images: ImagesConfig = ImagesConfig()  # images users attach: limits, and whether to take them at all

    @model_validator(mode="after")
    def _consistent(self, info: ValidationInfo) -> Policy:
        if info.context and info.context.get(DEFER_CONSISTENCY_CHECKS):
            return self
        problems = consistency_problems(self)
        if problems:
            raise ValueError("; ".join(f"{format_loc(loc)}: {problem}" for loc, problem in problems))
        return self

    def enabled_categories(self) -> tuple[LlamaGuardCategory, ...]:
        """The enabled categories in prompt order: the variant's built-in ones in code order (customised ones carrying
        the deployer's name and description), then the new custom codes by number. Built-in names are the model
        card's; the Llama Guard prompt spells a few differently (guards.policy.categories.LLAMA_GUARD_PROMPT_NAMES)."""
        lg = self.guard_settings(LLAMA_GUARD, LlamaGuardConfig)
        builtin = categories_for_variant(self.models.llama_guard.variant)
        custom = {c.code: c for c in lg.custom}
        chosen = set(builtin if lg.categories is None else lg.categories) - set(lg.excluded)
        result = []
        for code, name in builtin.items():
            if code in chosen:
                redefined = custom.get(code)
                result.append(
                    LlamaGuardCategory(code, redefined.name, redefined.description)
                    if redefined
                    else LlamaGuardCategory(code, name)
                )
        new = [c for c in lg.custom if c.code not in builtin and c.code not in lg.excluded]
        result.extend(LlamaGuardCategory(c.code, c.name, c.description) for c in sorted(new, key=_number))
        return tuple(result)


def _number(category: CustomCategory) -> int:
    return code_number(category.code)

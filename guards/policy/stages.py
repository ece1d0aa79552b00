"""`stages`, `refusals` and `audit`: which guards run where, what a refused user reads, and what is recorded.

`stages` and `refusals` follow from the declarations in `guards.policy.registry`: a section per stage, and in each a
sub-section per guard with that guard's default there. Every stage carries every guard so that consumers never test
for None; a stage written without a guard's key keeps that guard's default (fail-closed), it does not switch it off.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Literal, TypeVar, overload

from pydantic import create_model

from guards.policy.base import Flag, NonEmptyStr, PolicyModel
from guards.policy.guard_stages import GuardStage
from guards.policy.registry import GUARDS, STAGES, GuardName, StageName

SectionT = TypeVar("SectionT", bound=GuardStage)


class StageConfig(PolicyModel):
    """One stage's section: a sub-section per guard (fields made from the guard declarations)."""

    @overload
    def guard(self, name: GuardName | str) -> GuardStage: ...
    @overload
    def guard(self, name: GuardName | str, kind: type[SectionT]) -> SectionT: ...

    def guard(self, name: GuardName | str, kind: type[GuardStage] = GuardStage) -> GuardStage:
        """The guard's section on this stage; `kind` (its declaration's `stage_section`) types its own keys
        (`stage.guard(PROMPT_GUARD, PromptGuardStage).threshold`) and is checked."""
        section = getattr(self, name)
        if not isinstance(section, kind):
            raise TypeError(f"stages.*.{name} is a {type(section).__name__}, not a {kind.__name__}")
        return section


class StagesBase(PolicyModel):
    """The `stages` section: one `StageConfig` per declared stage."""

    def get(self, stage: StageName | str) -> StageConfig:
        section: StageConfig = getattr(self, stage)
        return section


class RefusalsBase(PolicyModel):
    """The message shown when a stage blocks; `guard_error` when a guard failed and the policy failed closed."""

    guard_error: NonEmptyStr = "A safety check failed, so this was blocked."

    def for_stage(self, stage: StageName | str) -> str:
        message: str = getattr(self, stage)
        return message


def _stage_model(stage: StageName) -> type[StageConfig]:
    fields: dict[str, Any] = {}
    for guard in GUARDS:
        default = guard.on_by_default.get(stage) or guard.stage_section(enabled=False)
        fields[guard.name] = (type(default), default)
    return create_model(_class_name(stage), __base__=StageConfig, **fields)


def _class_name(stage: str) -> str:
    return "".join(part.title() for part in stage.split("_")) + "Stage"


STAGE_MODELS: dict[str, type[StageConfig]] = {stage.name: _stage_model(stage.name) for stage in STAGES}

if TYPE_CHECKING:  # the type checker sees the bases; the fields are made from the declarations at import
    StagesConfig = StagesBase
    RefusalsConfig = RefusalsBase
else:
    StagesConfig = create_model(
        "StagesConfig", __base__=StagesBase, **{name: (model, model()) for name, model in STAGE_MODELS.items()}
    )
    RefusalsConfig = create_model(
        "RefusalsConfig", __base__=RefusalsBase, **{stage.name: (NonEmptyStr, stage.refusal) for stage in STAGES}
    )


class AuditConfig(PolicyModel):
    path: NonEmptyStr | None = None  # None = <data dir>/audit.jsonl
    texts: Literal["full", "hash", "redact"] = "hash"  # how checked texts are stored in the audit records
    # After every record the chain head (seq, hash) is written beside the log (`<log>.head`); this also sends it to
    # syslog (facility AUTH), an outside copy that deleting the log's end together with its head file cannot undo.
    head_syslog: Flag = False


__all__ = ["AuditConfig", "RefusalsConfig", "StageConfig", "StagesConfig"]

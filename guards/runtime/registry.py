"""The runners of a policy's guards, built from the guard declarations (`guards.policy.registry.GUARDS`)."""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from pathlib import Path

from guards.policy import Policy
from guards.policy.registry import GUARDS, STAGE_NAMES, GuardDeclaration
from guards.runtime.runner import GuardRunner

RunnerFactory = Callable[[Policy, str], GuardRunner]


def runner_factory(declaration: GuardDeclaration) -> RunnerFactory:
    """The declaration's `module:function`, imported now: a guard's module (and torch) loads only when some stage of
    the policy enables it."""
    module, _, attribute = declaration.runner.partition(":")
    factory: RunnerFactory = getattr(importlib.import_module(module), attribute)
    return factory


def enabled_anywhere(policy: Policy, guard: str) -> bool:
    return any(policy.stages.get(stage).guard(guard).enabled for stage in STAGE_NAMES)


def guard_source(policy: Policy, guard: str, model_dirs: Mapping[str, str | Path]) -> str:
    """A model guard's resolved folder (`model_dirs`, from the assistant layer), else its policy source as written;
    "" for a guard with no model."""
    if model_dirs.get(guard):
        return str(model_dirs[guard])
    section = getattr(policy.models, guard, None)
    return str(section.source) if section is not None else ""


def build_runners(policy: Policy, model_dirs: Mapping[str, str | Path]) -> dict[str, GuardRunner]:
    """A runner for every guard some stage enables. `model_dirs` maps model guards to resolved sources
    (`assistant.models.guard_model_dirs`)."""
    return {
        guard.name: runner_factory(guard)(policy, guard_source(policy, guard.name, model_dirs))
        for guard in GUARDS
        if enabled_anywhere(policy, guard.name)
    }

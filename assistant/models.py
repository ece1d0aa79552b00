"""Resolving the policy's model sources: hub ids and directories pass through, `tiny:NAME` becomes the directory of
a random-weight (main) or tiny trained (guards) test model, built on first use in the tiny-model build cache
(`assistant.dev.tiny_models`)."""

from __future__ import annotations

from pathlib import Path

from guards.policy import Policy
from guards.policy.registry import MODEL_GUARDS, STAGE_NAMES

TINY_PREFIX = "tiny:"


def resolve_source(source: str, *, tiny_dir: Path | None = None) -> str:
    """A source as the loaders take it: `tiny:NAME` -> its built directory; anything else unchanged."""
    if not source.startswith(TINY_PREFIX):
        return source
    from assistant.dev.tiny_models import ensure_tiny_model  # lazy: the test-model builders load only for tiny: sources

    return str(ensure_tiny_model(source[len(TINY_PREFIX) :], tiny_dir))


def guard_model_dirs(policy: Policy, *, tiny_dir: Path | None = None) -> dict[str, str]:
    """Model guard (`MODEL_GUARDS`: its section under `models`) -> resolved source, for those the policy's stages
    enable."""
    used = {name for name in MODEL_GUARDS if any(policy.stages.get(stage).guard(name).enabled for stage in STAGE_NAMES)}
    return {name: resolve_source(getattr(policy.models, name).source, tiny_dir=tiny_dir) for name in sorted(used)}


def main_model_spec(policy: Policy, override: str | None = None) -> object:
    """What `load_backend` takes: the `--model SPEC` string when given, else the policy's main model config (the
    backends resolve `tiny:NAME` sources themselves)."""
    return override or policy.models.main

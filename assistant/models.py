"""Resolving the policy's model sources: hub ids and directories pass through, `tiny:NAME` becomes the directory of
a random-weight (main) or tiny trained (guards) test model, built on first use in the tiny-model build cache
(`assistant.dev.tiny_models`)."""

from __future__ import annotations

from pathlib import Path

TINY_PREFIX = "tiny:"


def resolve_source(source: str, *, tiny_dir: Path | None = None) -> str:
    """A source as the loaders take it: `tiny:NAME` -> its built directory; anything else unchanged."""
    if not source.startswith(TINY_PREFIX):
        return source
    from assistant.dev.tiny_models import ensure_tiny_model

    return str(ensure_tiny_model(source[len(TINY_PREFIX) :], tiny_dir))


def guard_model_dirs(policy: object, *, tiny_dir: Path | None = None) -> dict[str, str]:
    """`llama_guard` / `prompt_guard` -> resolved source, for the guards the policy's stages enable."""
    stages = policy.stages  # type: ignore[attr-defined]
    used = {
        name
        for name in ("llama_guard", "prompt_guard")
        if any(getattr(getattr(stages, stage), name).enabled for stage in type(stages).model_fields)
    }
    models = policy.models  # type: ignore[attr-defined]
    return {name: resolve_source(getattr(models, name).source, tiny_dir=tiny_dir) for name in sorted(used)}


def main_model_spec(policy: object, override: str | None = None) -> object:
    """What `load_backend` takes: the `--model SPEC` string when given, else the policy's main model config (the
    backends resolve `tiny:NAME` sources themselves)."""
    return override or policy.models.main  # type: ignore[attr-defined]

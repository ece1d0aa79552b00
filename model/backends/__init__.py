"""Model backends: `load_backend(spec)` turns a spec string or a policy's `models.main` into a `ModelBackend`.

Spec strings: `scripted:FILE.jsonl`, `scripted-keyed:FILE.jsonl`, `transformers:PATH_OR_HUB_ID` (also
`transformers:tiny:NAME`), `tiny:NAME`, `openai:BASE_URL[#model]`. A config is a `MainModelSpec` (the policy's
`models.main`, docs/POLICY_SPEC.md). `BACKENDS` is the one table of kinds: adding a backend is one entry there.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from model.backends.base import (
    BackendDefaults,
    BackendStats,
    GenerationParams,
    LoadEvent,
    MainModelSpec,
    ModelBackend,
    ProgressCallback,
)
from model.backends.errors import BackendError, ModelNotFoundError
from model.backends.keyed import KeyedScriptedBackend
from model.backends.openai_backend import OpenAIBackend
from model.backends.scripted import ScriptedBackend
from model.backends.transformers_backend import TransformersBackend  # light: torch loads with the first model
from model.tokenizer import get_tokenizer

__all__ = [
    "BACKENDS",
    "BackendDefaults",
    "BackendError",
    "BackendKind",
    "BackendStats",
    "GenerationParams",
    "LoadEvent",
    "MainModelSpec",
    "ModelBackend",
    "ModelNotFoundError",
    "ProgressCallback",
    "load_backend",
]


@dataclass(frozen=True)
class BackendKind:
    """One backend kind: how a spec string `KIND:REST` builds it and, when `models.main.backend` may name it, how a
    policy's config does."""

    from_spec: Callable[[str, str, ProgressCallback | None], ModelBackend]  # (REST, the whole spec, on_progress)
    from_config: Callable[[MainModelSpec, ProgressCallback | None], ModelBackend] | None = None


def _openai_spec(rest: str, spec: str, on_progress: ProgressCallback | None) -> ModelBackend:
    url, _, model = rest.partition("#")
    return OpenAIBackend(url, model=model or None)


def _openai_config(config: MainModelSpec, on_progress: ProgressCallback | None) -> ModelBackend:
    if not config.base_url:
        raise BackendError("models.main.backend is openai but models.main.base_url is not set")
    # A remote model's family comes from the policy (there is no local config.json): its tokenizer marks the special
    # ids the server sends back and renders text prompts.
    family = getattr(config, "family", None)
    return OpenAIBackend(config.base_url, model=config.source or None, api_key_env=config.api_key_env,
                         context_window=config.context_window,
                         tokenizer=get_tokenizer(family=family) if family else None)


def _scripted_config(config: MainModelSpec, on_progress: ProgressCallback | None) -> ModelBackend:
    return ScriptedBackend(Path(_source(config)).expanduser(), context_window=config.context_window)


def _transformers_config(config: MainModelSpec, on_progress: ProgressCallback | None) -> ModelBackend:
    return TransformersBackend(_source(config), dtype=str(config.dtype), device=str(config.device),
                               context_window=config.context_window, on_progress=on_progress)


def _source(config: MainModelSpec) -> str:
    if not config.source:
        raise BackendError("models.main.source is not set")
    return str(config.source)


BACKENDS: dict[str, BackendKind] = {
    "scripted": BackendKind(lambda rest, _, __: ScriptedBackend(Path(rest).expanduser()), _scripted_config),
    # answers by the last message, statelessly: for concurrent load tests
    "scripted-keyed": BackendKind(lambda rest, _, __: KeyedScriptedBackend(Path(rest).expanduser())),
    "transformers": BackendKind(
        lambda rest, _, progress: TransformersBackend(rest, on_progress=progress), _transformers_config
    ),
    "tiny": BackendKind(lambda _, spec, progress: TransformersBackend(spec, on_progress=progress)),
    "openai": BackendKind(_openai_spec, _openai_config),
}

SPEC_HELP = (
    "use scripted:FILE.jsonl, scripted-keyed:FILE.jsonl, transformers:PATH_OR_HUB_ID, tiny:NAME or openai:URL[#model]"
)


def load_backend(spec: str | MainModelSpec, *, on_progress: ProgressCallback | None = None) -> ModelBackend:
    """Create the backend a spec names. Nothing heavy happens here: transformers models load on first use."""
    if isinstance(spec, str):
        return _from_string(spec, on_progress=on_progress)
    return _from_config(spec, on_progress=on_progress)


def _from_string(spec: str, *, on_progress: ProgressCallback | None) -> ModelBackend:
    kind, sep, rest = spec.partition(":")
    if not sep or not rest:
        raise BackendError(f"model spec {spec!r} has no backend prefix; {SPEC_HELP}")
    entry = BACKENDS.get(kind)
    if entry is None:
        raise BackendError(f"unknown model backend {kind!r} in {spec!r}; {SPEC_HELP}")
    return entry.from_spec(rest, spec, on_progress)


def _from_config(config: MainModelSpec, *, on_progress: ProgressCallback | None) -> ModelBackend:
    entry = BACKENDS.get(str(config.backend))
    if entry is None or entry.from_config is None:
        configurable = sorted(kind for kind, e in BACKENDS.items() if e.from_config is not None)
        raise BackendError(f"unknown models.main.backend {config.backend!r}; use {', '.join(configurable)}")
    return entry.from_config(config, on_progress)

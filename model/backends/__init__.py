"""Model backends: `load_backend(spec)` turns a spec string or a policy's `models.main` into a `ModelBackend`.

Spec strings: `scripted:FILE.jsonl`, `transformers:PATH_OR_HUB_ID` (also `transformers:tiny:NAME`),
`openai:BASE_URL[#model]`. A config object is duck-typed on the field names of docs/POLICY_SPEC.md `models.main`
(source, backend, base_url, api_key_env, device, dtype, context_window; optional prompt_as, reuse_cache).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from model.backends.base import BackendStats, GenerationParams, LoadEvent, ModelBackend, ProgressCallback
from model.backends.errors import BackendError, ModelNotFoundError

__all__ = [
    "BackendError",
    "BackendStats",
    "GenerationParams",
    "LoadEvent",
    "ModelBackend",
    "ModelNotFoundError",
    "ProgressCallback",
    "load_backend",
]

SPEC_HELP = (
    "use scripted:FILE.jsonl, scripted-keyed:FILE.jsonl, transformers:PATH_OR_HUB_ID, tiny:NAME or openai:URL[#model]"
)


def load_backend(spec: str | Any, *, on_progress: ProgressCallback | None = None) -> ModelBackend:
    """Create the backend a spec names. Nothing heavy happens here: transformers models load on first use."""
    if isinstance(spec, str):
        return _from_string(spec, on_progress=on_progress)
    return _from_config(spec, on_progress=on_progress)


def _from_string(spec: str, *, on_progress: ProgressCallback | None) -> ModelBackend:
    kind, sep, rest = spec.partition(":")
    if not sep or not rest:
        raise BackendError(f"model spec {spec!r} has no backend prefix; {SPEC_HELP}")
    if kind == "scripted":
        from model.backends.scripted import ScriptedBackend

        return ScriptedBackend(Path(rest).expanduser())
    if kind == "scripted-keyed":  # answers by the last message, statelessly: for concurrent load tests
        from model.backends.keyed import KeyedScriptedBackend

        return KeyedScriptedBackend(Path(rest).expanduser())
    if kind == "transformers":
        from model.backends.transformers_backend import TransformersBackend

        return TransformersBackend(rest, on_progress=on_progress)
    if kind == "tiny":
        from model.backends.transformers_backend import TransformersBackend

        return TransformersBackend(spec, on_progress=on_progress)
    if kind == "openai":
        from model.backends.openai_backend import OpenAIBackend

        url, _, model = rest.partition("#")
        return OpenAIBackend(url, model=model or None)
    raise BackendError(f"unknown model backend {kind!r} in {spec!r}; {SPEC_HELP}")


def _from_config(config: Any, *, on_progress: ProgressCallback | None) -> ModelBackend:
    backend = str(getattr(config, "backend", "transformers"))
    source = getattr(config, "source", None)
    context_window = int(getattr(config, "context_window", None) or 8192)
    if backend == "openai":
        from model.backends.openai_backend import OpenAIBackend

        base_url = getattr(config, "base_url", None)
        if not base_url:
            raise BackendError("models.main.backend is openai but models.main.base_url is not set")
        return OpenAIBackend(
            base_url,
            model=source or None,
            api_key_env=getattr(config, "api_key_env", None),
            prompt_as=getattr(config, "prompt_as", "auto"),
            context_window=context_window,
        )
    if not source:
        raise BackendError("models.main.source is not set")
    if backend == "scripted":
        from model.backends.scripted import ScriptedBackend

        return ScriptedBackend(Path(str(source)).expanduser(), context_window=context_window)
    if backend == "transformers":
        from model.backends.transformers_backend import TransformersBackend

        return TransformersBackend(
            str(source),
            dtype=str(getattr(config, "dtype", "auto")),
            device=str(getattr(config, "device", "auto")),
            context_window=context_window,
            reuse_cache=bool(getattr(config, "reuse_cache", True)),
            on_progress=on_progress,
        )
    raise BackendError(f"unknown models.main.backend {backend!r}; use transformers, openai or scripted")

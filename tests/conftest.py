"""Session-wide fixtures shared by every test package. Expensive artefacts are built once into the git-ignored
`.cache/` (each keeps its own version marker and is rebuilt atomically when the version changes)."""

from __future__ import annotations

from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
TINY_CACHE = REPO / ".cache" / "tiny-models"


@pytest.fixture(scope="session")
def tiny_models_cache() -> Path:
    """The directory holding the tiny checkpoints (same layout as `assistant dev tiny-models DIR`)."""
    TINY_CACHE.mkdir(parents=True, exist_ok=True)
    return TINY_CACHE


@pytest.fixture(scope="session")
def tiny_llama_dir(tiny_models_cache: Path) -> Path:
    """The tiny random-weight Llama 3.1 checkpoint (Hugging Face format, real tokenizer), built on first use."""
    from model.tiny import MAIN_MODEL_NAME, build_tiny_llama

    return build_tiny_llama(tiny_models_cache / MAIN_MODEL_NAME)


@pytest.fixture(scope="session")
def tiny_guard_dirs(tiny_models_cache: Path) -> dict[str, Path]:
    """The tiny trained guard models (`llama-guard`, `prompt-guard`, `prompt-guard-2`), built once into
    `.cache/tiny-models/` - the same directories the `tiny:NAME` sources of the agent tests resolve to, so the suite
    trains them once (each carries its version marker and is rebuilt when the version changes)."""
    from guards.tiny_guards import build_tiny_guards

    return build_tiny_guards(tiny_models_cache)

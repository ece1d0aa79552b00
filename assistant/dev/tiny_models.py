"""The tiny test models as one set: the random-weight main model (`model.tiny`) and the trained tiny guards
(`assistant.dev.tiny_guards.builder`), built into one directory. This module sits above both builders so neither
reaches up: the model layer knows nothing of guards, and both take the directory they build into.

The directory defaults to `model.tiny.default_tiny_dir()`: one build cache shared by the test suite, `make chat` and
`assistant dev tiny-models` (`$ASSISTANT_TINY_MODELS`, else a source checkout's `.cache/tiny-models`, else the user
cache folder).
"""

from __future__ import annotations

from pathlib import Path

from assistant.dev.tiny_guards.builder import TINY_GUARD_NAMES, build_tiny_guards, ensure_tiny_guard
from model.tiny import (
    LLAMA4_VISION_NAME,
    MAIN_MODEL_NAME,
    default_tiny_dir,
    ensure_tiny_llama4_vision,
    ensure_tiny_main,
)

TINY_MODEL_NAMES: tuple[str, ...] = (MAIN_MODEL_NAME, LLAMA4_VISION_NAME, *TINY_GUARD_NAMES)


def tiny_models_dir(directory: Path | None = None) -> Path:
    return Path(directory) if directory is not None else default_tiny_dir()


def build_tiny_models(directory: Path | None = None) -> dict[str, Path]:
    """Build (once per version) every tiny model under `directory`; return name -> directory."""
    root = tiny_models_dir(directory)
    return {MAIN_MODEL_NAME: ensure_tiny_main(root), LLAMA4_VISION_NAME: ensure_tiny_llama4_vision(root),
            **build_tiny_guards(root)}


def ensure_tiny_model(name: str, directory: Path | None = None) -> Path:
    """The directory of tiny model `name` (policy source `tiny:NAME`), built on first use; ValueError for an unknown
    name, listing the known ones."""
    root = tiny_models_dir(directory)
    if name == MAIN_MODEL_NAME:
        return ensure_tiny_main(root)
    if name == LLAMA4_VISION_NAME:
        return ensure_tiny_llama4_vision(root)
    if name in TINY_GUARD_NAMES:
        return ensure_tiny_guard(name, root)
    raise ValueError(f"unknown tiny model {name!r}; available: {', '.join(TINY_MODEL_NAMES)}")

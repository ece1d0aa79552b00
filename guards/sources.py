"""Where a guard model's weights come from: a policy source (`tiny:NAME`, a folder, a hub id) as a loader takes it,
and the device it runs on."""

from __future__ import annotations

from pathlib import Path

from guards.errors import GuardModelNotFoundError
from model.tiny import default_tiny_dir

TINY_PREFIX = "tiny:"


def resolve_source(source: str | Path) -> str:
    """`tiny:NAME` -> its folder in the tiny-model build cache; a local folder as is; anything else is a hub id.

    The tiny test models are built by the assistant layer (`assistant.models.resolve_source`, which every surface
    calls before the guards load; `assistant dev tiny-models`; the test suite's session fixture), never here: the
    builders are not on the guards' path. One not built yet is a missing model, named with the command that builds
    it."""
    text = str(source)
    if not text.startswith(TINY_PREFIX):
        return text
    folder = default_tiny_dir() / text.removeprefix(TINY_PREFIX)
    if not (folder / "config.json").is_file():
        raise GuardModelNotFoundError(
            f"guard model {text!r}: unknown tiny model (none built in {folder.parent}); the tiny test models are "
            "built by `assistant dev tiny-models` (or point the policy's source at a real checkpoint)"
        )
    return str(folder)


def resolve_device(device: str) -> str:
    if device != "auto":
        return device
    import torch  # lazy: only a guard model being loaded needs torch

    return "cuda" if torch.cuda.is_available() else "cpu"

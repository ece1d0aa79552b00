"""Where the assistant keeps its config and data: platformdirs locations, or everything under $ASSISTANT_HOME."""

from __future__ import annotations

import os
from pathlib import Path

from model.tiny import default_tiny_dir

APP_NAME = "guarded-assistant"
HOME_ENV = "ASSISTANT_HOME"


def _override() -> Path | None:
    value = os.environ.get(HOME_ENV)
    return Path(value).expanduser() if value else None


def config_dir() -> Path:
    """Directory for user configuration (key bindings, default policy). Not created here."""
    root = _override()
    if root is not None:
        return root / "config"
    import platformdirs

    return Path(platformdirs.user_config_dir(APP_NAME))


def data_dir() -> Path:
    """Directory for conversations, audit logs and built tiny models. Not created here."""
    root = _override()
    if root is not None:
        return root / "data"
    import platformdirs

    return Path(platformdirs.user_data_dir(APP_NAME))


def default_audit_path() -> Path:
    """The audit log of a policy that names no `audit.path`."""
    return data_dir() / "audit.jsonl"


def tiny_models_dir() -> Path:
    """Where the tiny test models are built by default: one build cache for the tests, `make chat` and
    `assistant dev tiny-models` (see `model.tiny.default_tiny_dir`: $ASSISTANT_TINY_MODELS, a source checkout's
    .cache/tiny-models, else the user cache folder)."""
    return default_tiny_dir()

"""Where the assistant keeps its config and data: platformdirs locations, or everything under $ASSISTANT_HOME."""

from __future__ import annotations

import os
from pathlib import Path

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


def tiny_models_dir() -> Path:
    """Where `assistant dev tiny-models` builds its random-weight test checkpoints by default."""
    return data_dir() / "tiny-models"

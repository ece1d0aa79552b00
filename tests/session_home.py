"""The test session's temporary homes, set up once when tests/conftest.py imports this module (before any test):
ASSISTANT_HOME and the XDG data/config/state folders point into a fresh temporary folder (subprocesses inherit them),
and the tiny-model build cache is the repo's. `REAL_BEFORE` is the user's real folders as they were before.

Tests import this module (not conftest, which pytest may import under another name and so run twice).
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
TINY_CACHE = REPO / ".cache" / "tiny-models"
APP_NAME = "guarded-assistant"
HOME_VARS = ("ASSISTANT_HOME", "XDG_DATA_HOME", "XDG_CONFIG_HOME", "XDG_STATE_HOME")


def real_user_folders() -> list[Path]:
    """The user's real data and config folders for the app, as they are before the session changes anything."""
    import platformdirs

    return [Path(platformdirs.user_data_dir(APP_NAME)), Path(platformdirs.user_config_dir(APP_NAME))]


def snapshot(folders: list[Path]) -> dict[str, tuple[int, int]]:
    """path -> (size, mtime_ns) of every file under the folders (the folders themselves included, as -1)."""
    state: dict[str, tuple[int, int]] = {}
    for folder in folders:
        if not folder.exists():
            continue
        state[str(folder)] = (-1, -1)
        for path in folder.rglob("*"):
            try:
                info = path.lstat()
            except OSError:
                continue
            state[str(path)] = (info.st_size, info.st_mtime_ns)
    return state


# Taken at import, before any test or fixture runs and before the homes below replace the environment.
REAL_FOLDERS = real_user_folders()
REAL_BEFORE = snapshot(REAL_FOLDERS)
_SESSION_HOME = Path(tempfile.mkdtemp(prefix="assistant-test-home-"))
_SAVED = {name: os.environ.get(name) for name in (*HOME_VARS, "ASSISTANT_TINY_MODELS")}
os.environ["ASSISTANT_HOME"] = str(_SESSION_HOME / "assistant")
os.environ["XDG_DATA_HOME"] = str(_SESSION_HOME / "xdg-data")
os.environ["XDG_CONFIG_HOME"] = str(_SESSION_HOME / "xdg-config")
os.environ["XDG_STATE_HOME"] = str(_SESSION_HOME / "xdg-state")
os.environ.setdefault("ASSISTANT_TINY_MODELS", str(TINY_CACHE))



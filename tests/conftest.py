"""Session-wide fixtures shared by every test package.

- Every test runs with its own homes: `ASSISTANT_HOME` and the XDG data/config/state folders point into a temporary
  directory for the whole session (subprocesses inherit them), so the suite's audit logs, threads and settings never
  land in the user's real data folder; `pytest_sessionfinish` fails the run if that folder changed anyway.
- Expensive artefacts are built once into the git-ignored `.cache/` (each keeps its own version marker and is rebuilt
  atomically when the version changes). The tiny models' build cache is the repo's `.cache/tiny-models`, the same
  one `make chat` and `assistant dev tiny-models` use from a checkout (model.tiny.default_tiny_dir).
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

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


@pytest.fixture(scope="session", autouse=True)
def session_home() -> Iterator[Path]:
    """The session's temporary home (ASSISTANT_HOME and XDG folders live under it); removed at the end."""
    yield _SESSION_HOME


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    for name, value in _SAVED.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value
    shutil.rmtree(_SESSION_HOME, ignore_errors=True)
    after = snapshot(REAL_FOLDERS)
    if after != REAL_BEFORE:
        changed = sorted(set(after.items()) ^ set(REAL_BEFORE.items()))
        names = sorted({path for path, _ in changed})
        message = f"the test session changed the real user folders {[str(f) for f in REAL_FOLDERS]}: {names[:10]}"
        session.config.get_terminal_writer().line(f"FAILED (home isolation): {message}", red=True)
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


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

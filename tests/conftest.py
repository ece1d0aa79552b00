"""Session-wide fixtures shared by every test package.

- Every test runs with its own homes: `ASSISTANT_HOME` and the XDG data/config/state folders point into a temporary
  directory for the whole session (subprocesses inherit them), so the suite's audit logs, threads and settings never
  land in the user's real data folder; `pytest_sessionfinish` fails the run if that folder changed anyway.
- Expensive artefacts are built once into the git-ignored `.cache/` (each keeps its own version marker and is rebuilt
  atomically when the version changes). The tiny models' build cache is the repo's `.cache/tiny-models`, the same
  one `make chat` and `assistant dev tiny-models` use from a checkout (model.tiny.default_tiny_dir).
"""

from __future__ import annotations

import logging
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.session_home import _SAVED, _SESSION_HOME, REAL_BEFORE, REAL_FOLDERS, TINY_CACHE, snapshot


@pytest.fixture(scope="session", autouse=True)
def session_home() -> Iterator[Path]:
    """The session's temporary home (ASSISTANT_HOME and XDG folders live under it); removed at the end."""
    yield _SESSION_HOME


_ROOT_HANDLERS = list(logging.getLogger().handlers)  # before any test module is imported


@pytest.fixture(autouse=True)
def no_log_handlers_left() -> Iterator[None]:
    """No log handler outlives the test that installed it: the CLI's (assistant.logs), or one a library installs on
    the root logger when a test imports it (llama_stack's writes to stdout), would otherwise write into a later
    test's captured output - which test follows which depends on the worker (make test runs two)."""
    yield
    from assistant.logs import reset_logging

    reset_logging()
    root = logging.getLogger()
    for handler in list(root.handlers):
        if handler not in _ROOT_HANDLERS and not type(handler).__module__.startswith("_pytest"):
            root.removeHandler(handler)


# The test files that take longest (seconds of setup and calls on this 2-core machine, `pytest --durations`),
# heaviest first. `make test` hands whole files to its workers in collection order, so a heavy file collected last
# keeps one worker busy alone at the end; starting these first lets the many short files fill in behind them.
HEAVY_FILES = (
    "tests/tui/test_attach_images.py", "tests/bench/test_bench_run.py", "tests/tui/test_stop_attach_search.py",
    "tests/bench/test_serve_load.py", "tests/tui/test_agent_images.py", "tests/reliability/test_limits.py",
    "tests/telemetry/test_tracing_off.py", "tests/model/test_backend_openai.py",
    "tests/tui/test_agent_stop_and_attach.py", "tests/server/test_load.py", "tests/test_install_outside_clone.py",
    "tests/guards/test_side_by_side_loads.py", "tests/reliability/test_durability.py", "tests/model/test_decoding.py",
    "tests/tui/test_web.py", "tests/bench/test_gpu_models.py", "tests/tui/test_app.py",
    "tests/guards/test_guard_process.py", "tests/server/test_images_serve.py",
)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The heavy files first (the order within each file, and of every other file, is kept)."""
    rank = {name: index for index, name in enumerate(HEAVY_FILES)}
    items.sort(key=lambda item: rank.get(item.nodeid.split("::", 1)[0], len(HEAVY_FILES)))


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
def tiny_llama4_vision_dir(tiny_models_cache: Path) -> Path:
    """The tiny random-weight Llama 4 with its vision tower (`tiny:llama4-vision`, model/tiny_llama4.py)."""
    from model.tiny import ensure_tiny_llama4_vision

    return ensure_tiny_llama4_vision(tiny_models_cache)


@pytest.fixture(scope="session", autouse=True)
def tiny_guard_dirs(tiny_models_cache: Path) -> dict[str, Path]:
    """The tiny trained guard models (`llama-guard`, `prompt-guard`, `prompt-guard-2`), built once into
    `.cache/tiny-models/` - the same directories the `tiny:NAME` sources of the agent tests resolve to, so the suite
    trains them once (each carries its version marker and is rebuilt when the version changes). Built before any
    test: the guards layer finds `tiny:NAME` in the cache but never builds it (guards.sources.resolve_source)."""
    from assistant.dev.tiny_guards.builder import build_tiny_guards

    return build_tiny_guards(tiny_models_cache)

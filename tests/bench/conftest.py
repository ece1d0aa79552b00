"""The bench scripts live outside the installed packages: put the repository root on the path for `bench.*`."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))


@pytest.fixture(autouse=True)
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("ASSISTANT_HOME", str(tmp_path / "home"))
    return tmp_path / "home"


@pytest.fixture(scope="session")
def bench_models(tiny_models_cache: Path):
    from bench.harness import tiny_model_dirs

    return tiny_model_dirs(tiny_models_cache)

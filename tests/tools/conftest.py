"""Shared fixtures: small sandbox limits so every escape attempt ends within a second or two."""

from __future__ import annotations

import subprocess

import pytest

from tools.sandbox import SandboxLimits
from tools.sandbox.isolation import SYSTEM_PYTHON, probe_bwrap


@pytest.fixture(scope="session")
def bwrap_ready() -> None:
    """The sandbox tests need real bubblewrap; fail (not skip) with the reason, as the issue requires it in CI."""
    problem = probe_bwrap("bwrap", SYSTEM_PYTHON)
    if problem is not None:
        pytest.fail(f"bubblewrap sandbox unavailable here: {problem}")


@pytest.fixture
def small_limits() -> SandboxLimits:
    return SandboxLimits(cpu_seconds=1, wall_seconds=3.0, memory_mb=256, max_processes=16, max_file_mb=1,
                         max_output_chars=2000)


def processes_of(uid: int) -> list[str]:
    """Live (non-zombie) processes running as `uid` on the host."""
    out = subprocess.run(["ps", "-e", "-o", "uid=,stat=,pid=,args="], capture_output=True, text=True).stdout
    rows = [line.split(None, 3) for line in out.splitlines()]
    return [" ".join(row) for row in rows if len(row) >= 3 and row[0] == str(uid) and not row[1].startswith("Z")]

"""Build a directory once per version, safely under concurrency: the tiny test checkpoints (model/tiny.py,
assistant/dev/tiny_guards/builder.py) use it so parallel test processes neither see half-written files nor each
train a copy."""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path


def is_built(path: Path, *, marker: str, version: str) -> bool:
    """True when `path` holds a complete build of `version` (its marker file is written last)."""
    try:
        return (Path(path) / marker).read_text(encoding="utf-8").strip() == version
    except OSError:
        return False


def build_once(path: Path, write: Callable[[Path], None], *, marker: str, version: str) -> Path:
    """Unless `version` is already at `path`, run `write(tmp)` on a fresh sibling directory, mark it complete and
    rename it into place. A file lock makes concurrent builders wait for one build instead of repeating it."""
    path = Path(path)
    if is_built(path, marker=marker, version=version):
        return path
    with _lock(path):
        if not is_built(path, marker=marker, version=version):
            _atomic_build(path, write, marker=marker, version=version)
    return path


@contextlib.contextmanager
def _lock(path: Path) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.parent / f".{path.name}.lock", "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _atomic_build(path: Path, write: Callable[[Path], None], *, marker: str, version: str) -> None:
    tmp = path.parent / f".{path.name}.tmp-{uuid.uuid4().hex}"
    tmp.mkdir()
    try:
        write(tmp)
        (tmp / marker).write_text(version + "\n", encoding="utf-8")
        if path.exists() and not is_built(path, marker=marker, version=version):
            # A stale or broken build: move it aside first (a rename is atomic, a recursive delete is not).
            stale = path.parent / f".{path.name}.stale-{uuid.uuid4().hex}"
            with contextlib.suppress(OSError):
                os.rename(path, stale)
            shutil.rmtree(stale, ignore_errors=True)
        try:
            os.rename(tmp, path)
        except OSError:
            if not is_built(path, marker=marker, version=version):  # another version won the race: say so
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

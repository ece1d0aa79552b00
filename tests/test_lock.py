"""The lock of tested versions (requirements.lock): the venv is exactly the lock, every pin carries hashes, the
ranges admit it, and the lock holds back a newer release that the ranges alone would take."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import zipfile
from importlib import metadata
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

REPO = Path(__file__).resolve().parents[1]
LOCK = REPO / "requirements.lock"
PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==(\S+)")
LOCKED = os.environ.get("LOCKED", "1") != "0"  # `make test-latest` runs the suite on an unlocked venv


def lock_entries(text: str) -> dict[str, tuple[str, list[str]]]:
    """name -> (version, hashes), read from pip-compile's format (a pin line, then `--hash=` continuation lines)."""
    entries: dict[str, tuple[str, list[str]]] = {}
    current = ""
    for line in text.splitlines():
        if match := PIN.match(line):
            current = canonicalize_name(match[1])
            entries[current] = (match[2], [])
        elif current and (found := re.search(r"--hash=(sha256:[0-9a-f]{64})", line)):
            entries[current][1].append(found[1])
    return entries


def entry_text(text: str, name: str) -> str:
    """The lock's own lines for one package: its pin and hashes, verbatim."""
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if (m := PIN.match(line)) and canonicalize_name(m[1]) == name)
    end = start + 1
    while end < len(lines) and lines[end].startswith("    --hash="):
        end += 1
    return "\n".join(lines[start:end]).rstrip(" \\") + "\n"


def test_every_pin_has_a_hash_and_the_ranges_admit_it() -> None:
    entries = lock_entries(LOCK.read_text(encoding="utf-8"))
    assert len(entries) > 100
    assert all(hashes for _, hashes in entries.values()), [n for n, (_, h) in entries.items() if not h]
    assert entries["torch"][0].endswith("+cpu")  # the CPU build here, not the multi-GB CUDA one
    import tomllib

    project = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    for spec in [*project["dependencies"], *project["optional-dependencies"]["dev"]]:
        req = Requirement(spec)
        version, _ = entries[canonicalize_name(req.name)]
        assert req.specifier.contains(Version(version), prereleases=True), f"{req} does not admit the locked {version}"


@pytest.mark.skipif(not LOCKED, reason="make test-latest: the venv holds the newest versions, not the lock")
def test_the_venv_holds_exactly_the_locked_versions() -> None:
    entries = lock_entries(LOCK.read_text(encoding="utf-8"))
    installed = {canonicalize_name(d.metadata["Name"]): d.version for d in metadata.distributions()}
    installed.pop("guarded-assistant", None)
    installed.pop("pip", None)  # pinned by the Makefile (PIP_VERSION), not by the lock
    locked = {name: version for name, (version, _) in entries.items()}
    wrong = {n: (v, locked.get(n, "(not locked)")) for n, v in installed.items() if locked.get(n) != v}
    missing = sorted(set(locked) - set(installed))
    assert not wrong and not missing, f"installed vs locked: {wrong}; locked but missing: {missing}"


def fake_wheel(folder: Path, name: str, version: str) -> Path:
    """A minimal, valid wheel of `name` at `version`: a pretend new release on a package index."""
    path = folder / f"{name}-{version}-py3-none-any.whl"
    dist = f"{name}-{version}.dist-info"
    with zipfile.ZipFile(path, "w") as wheel:
        wheel.writestr(f"{dist}/METADATA", f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n")
        tags = "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n"
        wheel.writestr(f"{dist}/WHEEL", tags)
        wheel.writestr(f"{dist}/RECORD", "")
    return path


def chosen_version(args: list[str], find_links: Path) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--dry-run", "--ignore-installed", "--no-deps", "--quiet",
         "--report", "-", "--find-links", str(find_links), *args],
        capture_output=True, text=True, timeout=120, check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads(done.stdout)["install"][0]["metadata"]["version"]


def test_the_lock_holds_back_a_pretend_new_release(tmp_path: Path) -> None:
    text = LOCK.read_text(encoding="utf-8")
    locked, _ = lock_entries(text)["platformdirs"]
    fake_wheel(tmp_path, "platformdirs", "99.0.0")
    # The range alone takes the pretend release the moment it appears...
    assert chosen_version(["platformdirs>=4"], tmp_path) == "99.0.0"
    # ... the lock's entry (pin and hashes, as `make setup` installs it) keeps the tested version.
    requirements = tmp_path / "locked.txt"
    requirements.write_text(entry_text(text, "platformdirs"), encoding="utf-8")
    assert chosen_version(["--require-hashes", "-r", str(requirements)], tmp_path) == locked

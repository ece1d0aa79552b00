"""`pip install` outside a clone: the wheel alone gives a working `assistant`.

The wheel is built from a copy of what it is made of (pyproject.toml, README.md, LICENSE and the packages, without
`__pycache__`), so a stale `build/` folder in the clone cannot hide a missing file. It is installed with
`--no-deps` into a fresh venv that sees the locked packages of `.venv` through a `.pth` file, but not the clone:
the `.pth` files of the project's own editable install are skipped, so `assistant` resolves into the new venv.
Every command then runs from a folder outside the clone, with the test session's homes and tiny-model cache.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
import tomllib
from pathlib import Path

import pytest

from tests.session_home import REPO

TIMEOUT_S = 300

# Run at every start of the new venv's Python (imported from a .pth file): the locked packages become importable,
# and their .pth files are processed, except the ones that would make the clone itself importable.
LOCKED_SITE_MODULE = """\
import os
import site
import sys

LOCKED = {locked!r}
CLONE = {clone!r}


def _add_locked() -> None:
    if LOCKED in sys.path:
        return
    sys.path.append(LOCKED)
    known = {{os.path.normcase(path) for path in sys.path}}
    for name in sorted(os.listdir(LOCKED)):
        if not name.endswith(".pth"):
            continue
        with open(os.path.join(LOCKED, name), encoding="utf-8") as file:
            text = file.read()
        if name.startswith("__editable__") or "__editable__" in text or CLONE in text:
            continue  # the project's editable install: the installed wheel must not fall back on the clone
        site.addpackage(LOCKED, name, known)


_add_locked()
"""


def _copy_sources(destination: Path) -> None:
    """What the wheel is built from: the metadata files and every package folder pyproject.toml includes."""
    config = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))
    patterns = config["tool"]["setuptools"]["packages"]["find"]["include"]
    tops = sorted({pattern.split(".")[0].rstrip("*") for pattern in patterns})
    destination.mkdir()
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        shutil.copyfile(REPO / name, destination / name)
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info")
    for top in tops:
        shutil.copytree(REPO / top, destination / top, ignore=ignore)


def _run(args: list[str | Path], *, cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(arg) for arg in args], cwd=cwd, env=env, capture_output=True, text=True, timeout=TIMEOUT_S, check=False
    )


def _ok(result: subprocess.CompletedProcess[str]) -> subprocess.CompletedProcess[str]:
    assert result.returncode == 0, f"{result.args} exited {result.returncode}\n{result.stdout}\n{result.stderr}"
    return result


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, str]]:
    """(the new venv's bin folder, the environment to run it in), the wheel installed into it."""
    root = tmp_path_factory.mktemp("outside-clone")
    assert not root.resolve().is_relative_to(REPO.resolve())
    env = {name: value for name, value in os.environ.items() if name not in ("PYTHONPATH", "VIRTUAL_ENV", "PYTHONHOME")}
    env.update(PIP_DISABLE_PIP_VERSION_CHECK="1", PIP_NO_INPUT="1", PYTHONNOUSERSITE="1")

    sources = root / "src"
    _copy_sources(sources)
    wheels = root / "wheels"
    _ok(_run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "-w", wheels, sources],
             cwd=root, env=env))
    (wheel,) = wheels.glob("guarded_assistant-*.whl")

    venv = root / "venv"
    _ok(_run([sys.executable, "-m", "venv", "--without-pip", venv], cwd=root, env=env))
    bin_dir = venv / "bin"
    purelib = _ok(_run([bin_dir / "python", "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
                       cwd=root, env=env)).stdout.strip()
    locked = sysconfig.get_path("purelib")  # .venv's site-packages: the locked dependencies (and pip)
    (Path(purelib) / "_locked_packages.py").write_text(
        LOCKED_SITE_MODULE.format(locked=locked, clone=str(REPO)), encoding="utf-8"
    )
    (Path(purelib) / "_locked_packages.pth").write_text("import _locked_packages\n", encoding="utf-8")
    # pip from the locked packages, run by the new venv's Python, installs into the new venv; --ignore-installed:
    # the editable install of .venv is visible as metadata and must be neither "already satisfied" nor uninstalled.
    _ok(_run([bin_dir / "python", "-m", "pip", "install", "-q", "--no-deps", "--no-index", "--ignore-installed",
              "--no-compile", wheel], cwd=root, env=env))
    return bin_dir, env


@pytest.mark.usefixtures("tiny_guard_dirs")  # built into the session's tiny-model cache, not by the subprocess
def test_the_wheel_works_outside_the_clone(installed: tuple[Path, dict[str, str]], tmp_path: Path,
                                           tiny_models_cache: Path) -> None:
    bin_dir, env = installed
    env = {**env, "ASSISTANT_TINY_MODELS": str(tiny_models_cache)}
    assistant = bin_dir / "assistant"
    assert not tmp_path.resolve().is_relative_to(REPO.resolve())

    where = _ok(_run([bin_dir / "python", "-c", (
        "import assistant, guards, sys; from assistant.tui.policy_lookup import offline_policy_path; "
        "import json; print(json.dumps([assistant.__file__, guards.__file__, str(offline_policy_path()), sys.path]))"
    )], cwd=tmp_path, env=env)).stdout
    *files, path = json.loads(where)
    venv = bin_dir.parent.resolve()
    for file in files:  # the packages and the offline smoke policy the chat offers: all from the wheel
        assert Path(file).resolve().is_relative_to(venv), files
    clone = REPO.resolve()
    from_clone = [entry for entry in path if entry and Path(entry).resolve().is_relative_to(clone)]
    locked_venv = Path(sys.prefix).resolve()  # the venv running the tests (.venv, or make test-latest's)
    assert all(Path(entry).resolve().is_relative_to(locked_venv) for entry in from_clone), path

    assert "policy" in _ok(_run([assistant, "--help"], cwd=tmp_path, env=env)).stdout

    starter = _ok(_run([assistant, "policy", "init", "mine.yaml"], cwd=tmp_path, env=env))
    assert "wrote mine.yaml" in starter.stderr
    assert "meta-llama/Llama-3.1-8B-Instruct" in (tmp_path / "mine.yaml").read_text(encoding="utf-8")

    listed = _ok(_run([assistant, "policy", "init", "--template"], cwd=tmp_path, env=env)).stdout
    names = [line.split()[0] for line in listed.splitlines()]
    assert names == sorted(path.stem for path in (REPO / "examples" / "policies").glob("*.yaml"))

    _ok(_run([assistant, "policy", "init", "--template", "offline-smoke", "smoke.yaml"], cwd=tmp_path, env=env))
    smoke = tmp_path / "smoke.yaml"
    assert smoke.read_bytes() == (REPO / "examples" / "policies" / "offline-smoke.yaml").read_bytes()
    assert _ok(_run([assistant, "policy", "check", "smoke.yaml"], cwd=tmp_path, env=env)).stdout.strip() == (
        "smoke.yaml: valid"
    )

    (tmp_path / "answers.jsonl").write_text(
        json.dumps({"completion": "Hello from the installed wheel.<|eot_id|>"}) + "\n", encoding="utf-8"
    )
    run = _ok(_run([assistant, "run", "hello", "--policy", "smoke.yaml", "--model", "scripted:answers.jsonl",
                    "--json"], cwd=tmp_path, env=env))
    events = [json.loads(line) for line in run.stdout.splitlines() if line.strip()]
    finals = [event for event in events if event["type"] == "final"]
    assert [event["text"] for event in finals] == ["Hello from the installed wheel."], run.stdout
    assert not [event for event in events if event["type"] in ("refusal", "error")], run.stdout

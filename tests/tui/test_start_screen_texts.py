"""What the start screen and /help tell a user: commands their shell can run, the real config folder, the
arguments the docs name."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from assistant.tui.commands import help_markdown
from assistant.tui.preflight import MissingModel, command_path, missing_models_problem


def test_a_command_not_on_path_is_shown_with_its_full_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    bin_dir = tmp_path / "venv" / "bin"
    bin_dir.mkdir(parents=True)
    (bin_dir / "hf").write_text("#!/bin/sh\n")
    os.chmod(bin_dir / "hf", 0o755)
    monkeypatch.setattr(sys, "executable", str(bin_dir / "python"))
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    assert command_path("hf") == str(bin_dir / "hf")  # only in the (not activated) venv: the full path
    monkeypatch.setenv("PATH", str(bin_dir))
    assert command_path("hf") == "hf"  # on PATH: the bare name
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    assert command_path("no-such-tool") == "no-such-tool"


def test_the_missing_models_screen_names_runnable_commands_and_the_real_config_dir(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ASSISTANT_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    missing = [MissingModel("main", "meta-llama/Llama-3.1-8B-Instruct", "not downloaded", "")]
    from assistant.tui.preflight import _download_fix

    missing = [MissingModel("main", m.source, m.why, _download_fix(m.source)) for m in missing]
    problem = missing_models_problem(missing, "default.yaml", builtin=True)
    assert "<config dir>" not in problem.fix
    assert str(tmp_path / "home" / "config" / "policy.yaml") in problem.fix
    hf = Path(sys.executable).parent / "hf"
    shown = str(hf) if hf.is_file() else "hf"
    assert f"`{shown} auth login`" in problem.fix
    assert f"{shown} download meta-llama/Llama-3.1-8B-Instruct" in problem.fix


def test_help_shows_each_commands_argument_by_name() -> None:
    text = help_markdown({})
    assert "`/rename TITLE`" in text and "`/export [FILE]`" in text and "[ARG]" not in text

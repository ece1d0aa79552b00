"""Keymap loading and remapping, preflight of the policy's models, and `assistant chat` without loading anything."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from tui_helpers import SIZE, ready, send

from assistant.tui.keymap import load_keymap
from assistant.tui.preflight import check_models, check_source, missing_models_problem
from assistant.tui.widgets.messages import UserMessage

ROOT = Path(__file__).resolve().parents[2]


def test_keymap_file_problems_name_the_file_and_key(tmp_path: Path) -> None:
    path = tmp_path / "keymap.toml"
    assert load_keymap(path).keymap == {}  # no file: defaults
    path.write_text('new_conversation = "ctrl+t, f9"\n')
    assert load_keymap(path).keymap == {"new_conversation": "ctrl+t,f9"}
    path.write_text('new_conversaton = "ctrl+t"\nexport = 3\n')
    result = load_keymap(path)
    assert result.keymap == {}
    typo = f"{path}: new_conversaton: extra inputs are not permitted"
    assert any(typo in p and "known ids" in p for p in result.problems)
    assert any(f"{path}: export: input should be a valid string" in p for p in result.problems)
    path.write_text("new_conversation = \n")
    assert "cannot read the keymap" in load_keymap(path).problems[0]


async def test_user_keymap_remaps_a_binding(make_app, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    path = tmp_path / "keymap.toml"
    path.write_text('new_conversation = "f9"\n')
    app = make_app(keymap=load_keymap(path))
    async with app.run_test(size=SIZE) as pilot:
        await ready(pilot)
        await send(pilot, "hello")
        first = app.thread_id
        await pilot.press("ctrl+n")  # the old key no longer starts a conversation
        await pilot.pause()
        assert app.thread_id == first
        await pilot.press("f9")
        await pilot.pause()
        assert app.thread_id != first and not app.query(UserMessage)
        assert app.query_one("#prompt").has_focus


def test_preflight_names_missing_hub_models(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from guards.policy.loader import load_policy

    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    import huggingface_hub.constants as constants

    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    policy = load_policy(ROOT / "examples" / "policies" / "default.yaml")
    missing = check_models(policy)
    assert [(m.component, m.source) for m in missing] == [
        ("main", "meta-llama/Llama-3.1-8B-Instruct"),
        ("llama_guard", "meta-llama/Llama-Guard-3-8B"),
        ("prompt_guard", "meta-llama/Prompt-Guard-86M"),
    ]
    problem = missing_models_problem(missing, "default.yaml")
    assert problem.title == "Missing models: Model, Llama Guard, Prompt Guard"
    assert "hf download meta-llama/Llama-3.1-8B-Instruct" in problem.fix and "license" in problem.fix
    # the offline smoke policy needs nothing that is not built locally
    assert check_models(load_policy(ROOT / "examples" / "policies" / "offline-smoke.yaml")) == []


def test_preflight_local_directories_and_model_override(tmp_path: Path) -> None:
    incomplete = tmp_path / "model"
    incomplete.mkdir()
    (incomplete / "config.json").write_text("{}")
    problem = check_source("main", str(incomplete))
    assert problem is not None and "weights" in problem.why
    assert check_source("main", str(tmp_path / "nope")) is not None
    from guards.policy.loader import load_policy

    policy = load_policy(ROOT / "examples" / "policies" / "offline-smoke.yaml")
    (missing,) = check_models(policy, "scripted:/does/not/exist.jsonl")
    assert missing.component == "main" and "does not exist" in missing.why
    script = tmp_path / "s.jsonl"
    script.write_text(json.dumps({"completion": "hi<|eot_id|>"}) + "\n")
    assert check_models(policy, f"scripted:{script}") == []


def test_chat_help_imports_neither_torch_nor_textual() -> None:
    code = (
        "import sys\nfrom click.testing import CliRunner\nfrom assistant.cli.main import cli\n"
        "result = CliRunner().invoke(cli, ['chat', '--help'])\nassert result.exit_code == 0, result.output\n"
        "assert '--policy' in result.output and '--thread' in result.output\n"
        "print(sorted(m for m in ('torch', 'transformers', 'textual', 'langgraph') if m in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT)
    assert out.stdout.strip() == "[]"


async def test_invalid_policy_is_explained_on_the_start_screen(make_app, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    from tui_helpers import wait_until

    from assistant.tui.backend import AssistantSession

    bad = tmp_path / "bad.yaml"
    bad.write_text("version: 1\nmodels:\n  main: {sourc: x}\n")
    app = make_app(AssistantSession(bad))
    async with app.run_test(size=SIZE) as pilot:
        await wait_until(pilot, lambda: bool(app.screen.query("#setup-title")), what="the start screen")
        screen = app.screen
        assert f"The policy {bad} is not valid" in str(screen.query_one("#setup-title").render())
        assert "sourc" in str(screen.query_one("#setup-message").render())
        assert "assistant policy check" in str(screen.query_one("#setup-fix").render())


async def test_missing_weights_start_screen_then_quit(make_app, tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    import huggingface_hub.constants as constants
    from tui_helpers import wait_until

    from assistant.tui.backend import AssistantSession
    from assistant.tui.policy_lookup import builtin_policy_path

    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "empty-hub"))
    app = make_app(AssistantSession(builtin_policy_path(), origin="built-in"))
    async with app.run_test(size=SIZE) as pilot:
        await wait_until(pilot, lambda: bool(app.screen.query("#setup-title")), what="the start screen")
        title = str(app.screen.query_one("#setup-title").render())
        assert title == "Missing models: Model, Llama Guard, Prompt Guard"
        assert "assistant policy init" in str(app.screen.query_one("#setup-fix").render())
        assert app.query_one("#load-main").state == "failed"
        assert not app.screen.query("#offline")  # no offline session given: no button that would do nothing
        await pilot.press("q")
        await pilot.pause()
    assert app.return_code == 0

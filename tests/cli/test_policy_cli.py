"""`assistant policy`: exit codes and outputs of check, show, schema, init and explain."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from assistant.cli import exit_codes
from assistant.cli.main import cli
from guards.policy import Policy, parse_policy_text

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "policies"
HEAVY = ("torch", "transformers", "accelerate", "semgrep", "codeshield", "langgraph", "textual")


def invoke(*args: str):  # type: ignore[no-untyped-def]
    return CliRunner().invoke(cli, ["policy", *args], catch_exceptions=False)


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "policy.yaml"
    path.write_text(text)
    return path


def test_check_valid_file(tmp_path: Path) -> None:
    result = invoke("check", str(write(tmp_path, "version: 1\n")))
    assert result.exit_code == exit_codes.OK
    assert result.stderr == ""
    assert "valid" in result.stdout


def test_check_valid_with_warnings_exits_0_and_warns_on_stderr(tmp_path: Path) -> None:
    path = write(tmp_path, "version: 1\nprompt_guard:\n  on_error: allow\n")
    result = invoke("check", str(path))
    assert result.exit_code == exit_codes.OK
    assert result.stderr.startswith(f"{path}:3: prompt_guard.on_error: warning: fail-open")
    assert "1 warning" in result.stdout


def test_check_invalid_file_exits_1_with_file_line_key_lines(tmp_path: Path) -> None:
    path = write(tmp_path, "version: 1\nllama_guard:\n  categories: [S1, S42]\n  threshold: 2\nbogus: 1\n")
    result = invoke("check", str(path))
    assert result.exit_code == exit_codes.POLICY_INVALID
    lines = result.stderr.splitlines()
    assert [line.split(": ")[:2] for line in lines] == [
        [f"{path}:4", "llama_guard.threshold"],
        [f"{path}:5", "bogus"],
    ]
    assert result.stdout == ""


def test_check_cross_key_problem_exits_1(tmp_path: Path) -> None:
    path = write(tmp_path, "version: 1\nllama_guard:\n  categories: [S1, S42]\n")
    result = invoke("check", str(path))
    assert result.exit_code == exit_codes.POLICY_INVALID
    assert result.stderr.startswith(f"{path}:3: llama_guard.categories[1]: unknown category S42")


@pytest.mark.parametrize("text", ["version: [1\n", "- a\n", ""])
def test_check_bad_yaml_is_invalid(tmp_path: Path, text: str) -> None:
    path = write(tmp_path, text)
    result = invoke("check", str(path))
    assert result.exit_code == exit_codes.POLICY_INVALID
    assert result.stderr.startswith(f"{path}:")


def test_check_unreadable_file_exits_2(tmp_path: Path) -> None:
    missing = tmp_path / "nope.yaml"
    result = invoke("check", str(missing))
    assert result.exit_code == exit_codes.BAD_INPUT
    assert result.stderr == f"{missing}: no such file\n"
    assert invoke("check", str(tmp_path)).exit_code == exit_codes.BAD_INPUT


@pytest.mark.parametrize("path", sorted(EXAMPLES.glob("*.yaml")), ids=lambda p: p.name)
def test_check_every_example(path: Path) -> None:
    result = invoke("check", str(path))
    assert result.exit_code == exit_codes.OK, result.stderr
    assert result.stderr == ""


def test_show_fills_in_defaults_and_round_trips(tmp_path: Path) -> None:
    result = invoke("show", str(write(tmp_path, "version: 1\nagent: {max_steps: 3}\n")))
    assert result.exit_code == exit_codes.OK
    shown = yaml.safe_load(result.stdout)
    assert shown["agent"]["max_steps"] == 3
    assert shown["llama_guard"]["on_error"] == "block"
    assert shown["stages"]["tool_result"]["prompt_guard"]["score"] == "injection"
    assert parse_policy_text(result.stdout).agent.max_steps == 3


def test_show_json(tmp_path: Path) -> None:
    result = invoke("show", "--json", str(write(tmp_path, "version: 1\n")))
    assert result.exit_code == exit_codes.OK
    assert parse_policy_text(result.stdout) == Policy()


def test_show_invalid_exits_1(tmp_path: Path) -> None:
    result = invoke("show", str(write(tmp_path, "version: 1\nx: 1\n")))
    assert result.exit_code == exit_codes.POLICY_INVALID
    assert result.stdout == ""


def test_schema_is_json_schema_that_accepts_the_examples() -> None:
    jsonschema = pytest.importorskip("jsonschema")
    result = invoke("schema")
    assert result.exit_code == exit_codes.OK
    schema = json.loads(result.stdout)
    jsonschema.Draft202012Validator.check_schema(schema)
    assert schema["additionalProperties"] is False
    for path in sorted(EXAMPLES.glob("*.yaml")):
        jsonschema.validate(yaml.safe_load(path.read_text()), schema)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({"version": 1, "llama_guard": {"threshhold": 0.5}}, schema)


def test_init_to_stdout_is_valid() -> None:
    result = invoke("init")
    assert result.exit_code == exit_codes.OK
    assert "meta-llama/Llama-Guard-3-8B" in result.stdout
    assert "meta-llama/Prompt-Guard-86M" in result.stdout
    assert "meta-llama/Llama-3.1-8B-Instruct" in result.stdout
    parse_policy_text(result.stdout)


def test_init_writes_a_file_that_checks_clean(tmp_path: Path) -> None:
    path = tmp_path / "mine.yaml"
    assert invoke("init", str(path)).exit_code == exit_codes.OK
    result = invoke("check", str(path))
    assert result.exit_code == exit_codes.OK and result.stderr == ""


def test_init_refuses_to_overwrite_without_force(tmp_path: Path) -> None:
    path = write(tmp_path, "keep me\n")
    result = invoke("init", str(path))
    assert result.exit_code == exit_codes.BAD_INPUT
    assert "--force" in result.stderr
    assert path.read_text() == "keep me\n"
    assert invoke("init", "--force", str(path)).exit_code == exit_codes.OK
    assert path.read_text().startswith("# Policy")


def test_explain_names_each_stage_and_its_outcomes() -> None:
    result = invoke("explain", str(EXAMPLES / "coding-assistant.yaml"))
    assert result.exit_code == exit_codes.OK
    out = result.stdout
    for stage in ("user_input:", "model_output:", "tool_call:", "tool_result:", "code:"):
        assert f"\n{stage}" in out
    assert "findings it recommends to warn: block and refuse" in out
    assert "block (fail closed)" in out
    assert "built-in tools enabled: code_interpreter" in out


def test_explain_shows_fail_open_and_warnings(tmp_path: Path) -> None:
    result = invoke("explain", str(write(tmp_path, "version: 1\nllama_guard: {on_error: allow}\n")))
    assert result.exit_code == exit_codes.OK
    assert "ALLOW the text unchecked (fail open)" in result.stdout
    assert "Warnings:\n  - llama_guard.on_error: fail-open" in result.stdout


def _modules_after(args: list[str]) -> set[str]:
    probe = (
        "import sys, json\n"
        "from assistant.cli.main import cli\n"
        f"try:\n    cli.main(args={args!r}, standalone_mode=False)\n"
        "except SystemExit:\n    pass\n"
        "print(json.dumps(sorted(sys.modules)))\n"
    )
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    return set(json.loads(done.stdout.strip().splitlines()[-1]))


@pytest.mark.parametrize("command", ["check", "explain"])
def test_policy_commands_import_nothing_heavy(command: str) -> None:
    loaded = _modules_after(["policy", command, str(EXAMPLES / "coding-assistant.yaml")])
    assert "guards.policy" in loaded  # the probe really loaded a policy
    assert not {m for m in loaded if m.split(".")[0] in HEAVY}


def test_policy_check_through_the_installed_entry_point() -> None:
    exe = Path(sys.executable).with_name("assistant")
    if not exe.exists():
        pytest.skip("no assistant script next to this interpreter")
    done = subprocess.run([str(exe), "policy", "check", str(EXAMPLES / "strict.yaml")], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr


def test_init_template_alone_lists_every_template_with_its_description() -> None:
    result = invoke("init", "--template")
    assert result.exit_code == exit_codes.OK, result.output
    lines = result.stdout.splitlines()
    assert [line.split()[0] for line in lines] == sorted(path.stem for path in EXAMPLES.glob("*.yaml"))
    smoke = next(line for line in lines if line.startswith("offline-smoke "))
    assert smoke.split(None, 1)[1] == yaml.safe_load((EXAMPLES / "offline-smoke.yaml").read_text())["description"]


@pytest.mark.parametrize("path", sorted(EXAMPLES.glob("*.yaml")), ids=lambda p: p.stem)
def test_init_template_writes_that_example(tmp_path: Path, path: Path) -> None:
    target = tmp_path / "mine.yaml"
    result = invoke("init", "--template", path.stem, str(target))
    assert result.exit_code == exit_codes.OK, result.output
    assert target.read_bytes() == path.read_bytes()
    assert result.stderr == f"wrote {target}; check it with `assistant policy check {target}`\n"
    checked = invoke("check", str(target))
    assert checked.exit_code == exit_codes.OK and checked.stderr == ""


def test_init_template_without_file_prints_it() -> None:
    result = invoke("init", "--template", "strict")
    assert result.exit_code == exit_codes.OK
    assert result.stdout == (EXAMPLES / "strict.yaml").read_text()


def test_init_unknown_template_exits_2_naming_the_templates(tmp_path: Path) -> None:
    target = tmp_path / "mine.yaml"
    result = invoke("init", "--template", "nope", str(target))
    assert result.exit_code == exit_codes.BAD_INPUT
    assert result.stderr.startswith("error: unknown template 'nope'; templates: coding-assistant, default, ")
    assert "offline-smoke" in result.stderr and result.stdout == ""
    assert not target.exists()


def test_init_template_needs_a_name_when_a_file_is_given(tmp_path: Path) -> None:
    target = tmp_path / "mine.yaml"
    result = invoke("init", str(target), "--template")
    assert result.exit_code == exit_codes.BAD_INPUT
    assert "--template needs a NAME" in result.stderr and "offline-smoke" in result.stderr
    assert not target.exists()


def test_init_template_refuses_to_overwrite_without_force(tmp_path: Path) -> None:
    path = write(tmp_path, "keep me\n")
    result = invoke("init", "--template", "offline-smoke", str(path))
    assert result.exit_code == exit_codes.BAD_INPUT
    assert "--force" in result.stderr
    assert path.read_text() == "keep me\n"
    assert invoke("init", "--template", "offline-smoke", "--force", str(path)).exit_code == exit_codes.OK
    assert path.read_bytes() == (EXAMPLES / "offline-smoke.yaml").read_bytes()

"""The shipped policies: the examples, and the starter that `assistant policy init` writes."""

from pathlib import Path

import pytest
import yaml

from assistant.cli.policy_cmd import dump_policy, starter_policy_text
from guards.policy import Policy, check_policy_file, check_policy_text, load_policy, parse_policy_text

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "policies"
EXAMPLE_FILES = sorted(EXAMPLES.glob("*.yaml"))


def test_the_four_examples_are_there() -> None:
    assert {p.name for p in EXAMPLE_FILES} >= {
        "default.yaml",
        "strict.yaml",
        "coding-assistant.yaml",
        "offline-smoke.yaml",
    }


@pytest.mark.parametrize("path", EXAMPLE_FILES, ids=lambda p: p.name)
def test_every_example_is_valid_without_warnings(path: Path) -> None:
    checked = check_policy_file(path)
    assert checked.warnings == []


@pytest.mark.parametrize("path", EXAMPLE_FILES, ids=lambda p: p.name)
def test_every_example_explains_its_choices(path: Path) -> None:
    text = path.read_text()
    assert text.startswith("# ")
    assert text.count("#") >= 10


def test_guards_fail_closed_in_every_example() -> None:
    for path in EXAMPLE_FILES:
        policy = load_policy(path)
        assert {policy.llama_guard.on_error, policy.prompt_guard.on_error, policy.code_shield.on_error} == {"block"}
        assert policy.tools.sandbox.isolation == "required", path.name


def test_offline_smoke_runs_on_tiny_models_and_stops_any_code_finding() -> None:
    policy = load_policy(EXAMPLES / "offline-smoke.yaml")
    models = policy.models
    assert (models.main.source, models.llama_guard.source, models.prompt_guard.source) == (
        "tiny:llama-3.1-instruct",
        "tiny:llama-guard",
        "tiny:prompt-guard",
    )
    assert {models.main.device, models.llama_guard.device, models.prompt_guard.device} == {"cpu"}
    assert policy.tools.builtin.code_interpreter.enabled
    assert policy.stages.code.code_shield.enabled
    assert (policy.code_shield.actions.warn, policy.code_shield.actions.block) == ("block", "block")


def test_coding_assistant_stops_code_on_any_finding() -> None:
    policy = load_policy(EXAMPLES / "coding-assistant.yaml")
    assert policy.tools.builtin.code_interpreter.enabled
    assert policy.stages.code.code_shield.enabled
    assert (policy.code_shield.actions.warn, policy.code_shield.actions.block) == ("block", "block")


def test_strict_turns_everything_on() -> None:
    policy = load_policy(EXAMPLES / "strict.yaml")
    stages = policy.stages
    assert all(stages.get(s).llama_guard.enabled for s in ("user_input", "model_output", "tool_call", "tool_result"))
    assert stages.user_input.prompt_guard.enabled and stages.tool_result.prompt_guard.enabled
    assert policy.llama_guard.threshold < 0.5
    assert stages.tool_result.prompt_guard.threshold < 0.5
    enabled_tools = {
        name
        for name in ("code_interpreter", "brave_search", "wolfram_alpha")
        if getattr(policy.tools.builtin, name).enabled
    }
    assert enabled_tools <= set(policy.tools.approval_required)
    assert policy.tools.untrusted_content == "block"


def test_default_uses_the_real_models() -> None:
    models = load_policy(EXAMPLES / "default.yaml").models
    assert models.main.source == "meta-llama/Llama-3.1-8B-Instruct"
    assert models.llama_guard.source == "meta-llama/Llama-Guard-3-8B"
    assert models.prompt_guard.source.startswith("meta-llama/")


def test_starter_is_valid_as_written_and_names_the_real_models() -> None:
    text = starter_policy_text()
    checked = check_policy_text(text, file="starter.yaml")
    assert checked.warnings == []
    models = checked.policy.models
    assert models.main.source == "meta-llama/Llama-3.1-8B-Instruct"
    assert models.llama_guard.source == "meta-llama/Llama-Guard-3-8B"
    assert models.prompt_guard.source == "meta-llama/Prompt-Guard-86M"


def test_starter_shows_the_defaults_except_where_marked() -> None:
    """The starter claims every key shows its default unless marked CHANGED; hold it to that."""
    text = starter_policy_text()
    starter = parse_policy_text(text)
    assert text.count("CHANGED from") == 1
    assert starter.model_copy(update={"code_shield": Policy().code_shield}) == Policy()
    assert starter.code_shield.actions.warn == "block"


def test_starter_mentions_every_section() -> None:
    data = yaml.safe_load(starter_policy_text())
    assert set(data) == set(Policy.model_fields) - {"description"}


@pytest.mark.parametrize("path", EXAMPLE_FILES, ids=lambda p: p.name)
@pytest.mark.parametrize("as_json", [False, True])
def test_show_output_round_trips(path: Path, as_json: bool) -> None:
    policy = load_policy(path)
    assert parse_policy_text(dump_policy(policy, as_json=as_json)) == policy  # JSON is YAML too


def test_offline_smoke_names_models_the_tiny_builder_knows() -> None:
    from assistant.dev.tiny_models import TINY_MODEL_NAMES

    known = set(TINY_MODEL_NAMES)
    models = load_policy(EXAMPLES / "offline-smoke.yaml").models
    sources = {m.source.removeprefix("tiny:") for m in (models.main, models.llama_guard, models.prompt_guard)}
    assert sources <= known, f"tiny model names not known to assistant/dev/tiny_models.py: {sorted(sources - known)}"

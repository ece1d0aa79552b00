"""The policy schema: fail-closed defaults, per-stage defaults, strict types and the category rules."""

import pytest
from pydantic import ValidationError

from guards.policy import STAGE_NAMES, Policy, parse_policy_text
from guards.policy.categories import LLAMA_GUARD_CATEGORIES, categories_for_variant
from guards.policy.models import ModelConfig


def test_minimal_policy_is_complete_and_fail_closed() -> None:
    policy = parse_policy_text("version: 1\n")
    assert policy == Policy()
    assert policy.llama_guard.on_error == policy.prompt_guard.on_error == policy.code_shield.on_error == "block"
    assert policy.llama_guard.action == "block"
    assert policy.tools.sandbox.isolation == "required"
    assert policy.tools.untrusted_content == "ask"
    assert policy.models.main.source == "meta-llama/Llama-3.1-8B-Instruct"
    assert policy.models.llama_guard.source == "meta-llama/Llama-Guard-3-8B"
    assert policy.models.prompt_guard.source == "meta-llama/Prompt-Guard-86M"
    assert ModelConfig is type(policy.models.main)


def test_stage_defaults_match_the_spec() -> None:
    stages = Policy().stages
    enabled = {
        stage: {g for g in ("llama_guard", "prompt_guard", "code_shield") if getattr(stages.get(stage), g).enabled}
        for stage in STAGE_NAMES
    }
    assert enabled == {
        "user_input": {"llama_guard", "prompt_guard"},
        "model_output": {"llama_guard", "code_shield"},
        "tool_call": set(),
        "tool_result": {"prompt_guard"},
        "code": {"code_shield"},
    }
    assert stages.user_input.prompt_guard.score == "jailbreak"
    assert stages.tool_result.prompt_guard.score == "injection"


def test_a_partly_written_stage_keeps_its_other_defaults() -> None:
    policy = parse_policy_text("version: 1\nstages:\n  user_input:\n    prompt_guard: {threshold: 0.3}\n")
    user = policy.stages.user_input
    assert user.llama_guard.enabled  # not switched off by leaving it out
    assert (user.prompt_guard.enabled, user.prompt_guard.score, user.prompt_guard.threshold) == (True, "jailbreak", 0.3)


def test_policy_is_frozen() -> None:
    policy = Policy()
    with pytest.raises(ValidationError):
        policy.llama_guard.threshold = 0.9  # type: ignore[misc]


@pytest.mark.parametrize("variant, last", [("8b", "S14"), ("1b", "S13")])
def test_all_categories_of_the_variant_are_enabled_by_default(variant: str, last: str) -> None:
    policy = parse_policy_text(f"version: 1\nmodels: {{llama_guard: {{variant: {variant}}}}}\n")
    codes = [c.code for c in policy.enabled_categories()]
    assert codes == list(categories_for_variant(variant))  # type: ignore[arg-type]
    assert codes[-1] == last


def test_category_table_is_the_model_cards() -> None:
    assert len(LLAMA_GUARD_CATEGORIES) == 14
    assert LLAMA_GUARD_CATEGORIES["S11"] == "Suicide & Self-Harm"
    assert LLAMA_GUARD_CATEGORIES["S14"] == "Code Interpreter Abuse"


def test_enabled_categories_apply_excluded_and_custom() -> None:
    policy = parse_policy_text(
        """\
version: 1
llama_guard:
  excluded: [S13, S2]
  custom:
    - {code: S16, name: Later, description: second new one}
    - {code: S5, name: Slander, description: our own wording}
    - {code: S15, name: Competitors, description: talk about competitors}
"""
    )
    categories = policy.enabled_categories()
    assert [c.code for c in categories] == [f"S{i}" for i in (1, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 14, 15, 16)]
    by_code = {c.code: c for c in categories}
    assert (by_code["S5"].name, by_code["S5"].description) == ("Slander", "our own wording")
    assert by_code["S1"].description is None


def test_category_actions_take_the_strictest() -> None:
    policy = parse_policy_text("version: 1\nllama_guard: {action: warn, category_actions: {S1: block, S6: log}}\n")
    assert policy.llama_guard.action_for(["S6"]) == "log"
    assert policy.llama_guard.action_for(["S6", "S1"]) == "block"
    assert policy.llama_guard.action_for(["S2"]) == "warn"
    assert policy.llama_guard.action_for([]) == "warn"


def test_direct_construction_runs_the_cross_key_checks_too() -> None:
    with pytest.raises(ValidationError, match=r"llama_guard.custom\[0\].code: S3 is both excluded and customised"):
        Policy.model_validate(
            {"llama_guard": {"excluded": ["S3"], "custom": [{"code": "S3", "name": "n", "description": "d"}]}}
        )


@pytest.mark.parametrize(
    "yaml_text",
    [
        "version: 1\nstages: {user_input: {llama_guard: {enabled: 'false'}}}\n",  # a string is not a boolean
        "version: 1\nagent: {max_steps: '8'}\n",
        "version: 1\nagent: {max_steps: 8.0}\n",
        "version: 1\nllama_guard: {threshold: '0.5'}\n",
        "version: 2\n",
    ],
)
def test_wrong_types_are_not_coerced(yaml_text: str) -> None:
    from guards.policy import PolicyError

    with pytest.raises(PolicyError):
        parse_policy_text(yaml_text)


def test_json_schema_accepts_the_defaults_dump() -> None:
    jsonschema = pytest.importorskip("jsonschema")
    schema = Policy.model_json_schema(by_alias=True)
    jsonschema.validate(Policy().model_dump(mode="json", by_alias=True), schema)


def test_the_agreed_spec_is_exactly_the_defaults() -> None:
    """docs/POLICY_SPEC.md's YAML block is what other packages code against: it must load and equal Policy()."""
    import re
    from pathlib import Path

    spec = Path(__file__).resolve().parents[2] / "docs" / "POLICY_SPEC.md"
    if not spec.exists():
        pytest.skip("docs/POLICY_SPEC.md not present")
    block = re.search(r"```yaml\n(.*?)```", spec.read_text(), re.S)
    assert block is not None
    assert parse_policy_text(block.group(1), file=str(spec)) == Policy()

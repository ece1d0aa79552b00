"""Valid but risky policies: each risky choice gives a warning naming its key; the defaults give none."""

import pytest

from guards.policy import Policy, parse_policy_text, policy_warning_items, policy_warnings


def warned_keys(yaml_body: str) -> set[str]:
    policy = parse_policy_text("version: 1\n" + yaml_body)
    return {item.key_path for item in policy_warning_items(policy)}


def test_defaults_have_no_warnings() -> None:
    assert policy_warnings(Policy()) == []


@pytest.mark.parametrize(
    "body, key",
    [
        ("llama_guard: {on_error: allow}", "llama_guard.on_error"),
        ("prompt_guard: {on_error: allow}", "prompt_guard.on_error"),
        ("code_shield: {on_error: allow}", "code_shield.on_error"),
        ("stages: {user_input: {llama_guard: {enabled: false}}}", "stages.user_input.llama_guard.enabled"),
        ("stages: {user_input: {prompt_guard: {enabled: false}}}", "stages.user_input.prompt_guard.enabled"),
        ("stages: {model_output: {llama_guard: {enabled: false}}}", "stages.model_output.llama_guard.enabled"),
        ("stages: {tool_result: {prompt_guard: {enabled: false}}}", "stages.tool_result.prompt_guard.enabled"),
        ("stages: {tool_result: {prompt_guard: {score: jailbreak}}}", "stages.tool_result.prompt_guard.score"),
        ("stages: {user_input: {prompt_guard: {action: log}}}", "stages.user_input.prompt_guard.action"),
        ("stages: {user_input: {prompt_guard: {threshold: 1.0}}}", "stages.user_input.prompt_guard.threshold"),
        ("stages: {tool_result: {prompt_guard: {threshold: 0.0}}}", "stages.tool_result.prompt_guard.threshold"),
        ("llama_guard: {threshold: 1.0}", "llama_guard.threshold"),
        ("llama_guard: {action: warn}", "llama_guard.action"),
        ("tools: {sandbox: {isolation: best_effort}}", "tools.sandbox.isolation"),
        ("tools: {untrusted_content: allow}", "tools.untrusted_content"),
        ("tools: {allow: [a, b], deny: [b]}", "tools.allow[1]"),
        ("tools: {builtin: {brave_search: {api_key: secret}}}", "tools.builtin.brave_search.api_key"),
        ("tools: {builtin: {wolfram_alpha: {app_id: secret}}}", "tools.builtin.wolfram_alpha.app_id"),
        ("code_shield: {actions: {block: warn}}", "code_shield.actions.block"),
        ("audit: {texts: full}", "audit.texts"),
        ("models: {llama_guard: {source: meta-llama/Llama-Guard-3-1B}}", "models.llama_guard.variant"),
        ("models: {llama_guard: {source: meta-llama/Llama-Guard-3-8B, variant: 1b}}", "models.llama_guard.variant"),
        ("llama_guard: {excluded: [S6], category_actions: {S6: warn}}", "llama_guard.category_actions.S6"),
        (
            "tools: {builtin: {code_interpreter: {enabled: true}}}\nstages: {code: {code_shield: {enabled: false}}}",
            "stages.code.code_shield.enabled",
        ),
    ],
)
def test_risky_choice_is_warned(body: str, key: str) -> None:
    assert key in warned_keys(body)


def test_code_interpreter_with_warn_only_code_shield_is_warned() -> None:
    """Code Shield's Python rules are all warn: unless warn stops code, no Python finding ever does."""
    keys = warned_keys("tools: {builtin: {code_interpreter: {enabled: true}}}")
    assert keys == {"code_shield.actions.warn"}
    assert (
        warned_keys("tools: {builtin: {code_interpreter: {enabled: true}}}\ncode_shield: {actions: {warn: block}}")
        == set()
    )


def test_warning_strings_name_the_key() -> None:
    (text,) = policy_warnings(parse_policy_text("version: 1\ntools: {untrusted_content: allow}\n"))
    assert text.startswith("tools.untrusted_content: ")


@pytest.mark.parametrize("stage", ["user_input", "model_output"])
def test_prompt_guard_v1_injection_label_on_dialogue_is_warned(stage: str) -> None:
    """Prompt Guard v1's model card: the INJECTION label is for third-party text, not direct user dialogue."""
    body = f"stages: {{{stage}: {{prompt_guard: {{enabled: true, score: injection}}}}}}"
    assert f"stages.{stage}.prompt_guard.score" in warned_keys(body)
    # Prompt Guard 2 has a single malicious label: nothing to warn about; nor for tool results (third-party text).
    v2 = body + "\nmodels: {prompt_guard: {source: meta-llama/Llama-Prompt-Guard-2-86M}}"
    assert f"stages.{stage}.prompt_guard.score" not in warned_keys(v2)
    jailbreak = f"stages: {{{stage}: {{prompt_guard: {{enabled: true, score: jailbreak}}}}}}"
    assert f"stages.{stage}.prompt_guard.score" not in warned_keys(jailbreak)
    assert "stages.tool_result.prompt_guard.score" not in warned_keys(body)

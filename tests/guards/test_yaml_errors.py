"""A YAML syntax mistake in a policy is reported at its own line and column, with a plain hint."""

from __future__ import annotations

import pytest

from guards.policy import PolicyError, parse_policy_text


def only_problem(text: str) -> tuple[int | None, str]:
    with pytest.raises(PolicyError) as caught:
        parse_policy_text(text, file="p.yaml")
    (issue,) = caught.value.errors
    return issue.line, issue.problem


@pytest.mark.parametrize(
    "text, line, column, hint",
    [
        ("version: 1\nllama_guard:\n  threshold: 0.5\n   action: block\n", 4, 4, "indentation"),
        ("version: 1\nllama_guard:\n    threshold: 0.5\n  action: block\n", 4, 3, "indentation"),
        ("version: 1\nstages:\n  user_input:\n    llama_guard: {enabled: true}\n   prompt_guard: {}\n", 5, 4,
         "indentation"),
        # PyYAML notices a lost colon only on the next line; the report points at the key that lost it.
        ("version: 1\nllama_guard\n  threshold: 0.5\n", 2, 12, "missing colon"),
        ("version: 1\ndescription hello\nllama_guard:\n  threshold: 0.5\n", 2, 18, "missing colon"),
        ("version: 1\nllama_guard:\n\tthreshold: 0.5\n", 3, 1, "a tab"),
        ("version: 1\nllama_guard: {threshold: 0.5\n", 2, 14, "unclosed `{`"),
    ],
)
def test_mistake_is_located_and_named(text: str, line: int, column: int, hint: str) -> None:
    found_line, problem = only_problem(text)
    assert found_line == line
    assert problem.startswith(f"invalid YAML at column {column}: {hint}"), problem
    assert "YAML said:" in problem  # PyYAML's own words are kept for the curious


def test_valid_but_odd_yaml_still_parses() -> None:
    policy = parse_policy_text("version: 1\ndescription: >\n  folded\n  text\n", file="p.yaml")
    assert policy.description.strip() == "folded text"

"""`models.prompt_guard.dtype` is honoured (issue 12, smaller defects): the loaded classifier runs in that dtype."""

from __future__ import annotations

from pathlib import Path

import pytest

from guards.policy import parse_policy_text
from guards.prompt_guard.guard import PromptGuard
from guards.prompt_guard.runner import PromptGuardRunner


@pytest.mark.parametrize("dtype", ["bfloat16", "float32"])
def test_the_policy_dtype_is_the_model_dtype(tiny_guard_dirs: dict[str, Path], dtype: str) -> None:
    import torch

    policy = parse_policy_text(f"version: 1\nmodels: {{prompt_guard: {{dtype: {dtype}}}}}\n")
    guard = PromptGuardRunner(policy, str(tiny_guard_dirs["prompt-guard"])).load()
    assert next(guard.model.parameters()).dtype == getattr(torch, dtype)
    assert guard.score("please jbtrigger now", "jailbreak").score > 0.5
    assert guard.score("please summarize the report", "jailbreak").score < 0.5


def test_an_unknown_dtype_is_refused(tiny_guard_dirs: dict[str, Path]) -> None:
    with pytest.raises(ValueError, match="unknown dtype 'int8'"):
        PromptGuard.load(tiny_guard_dirs["prompt-guard"], dtype="int8")

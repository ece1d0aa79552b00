"""Llama Guard scoring paths that need no trained model: loading errors, garbage first tokens, the prefix cache."""

from __future__ import annotations

from pathlib import Path

import pytest

from guards.errors import GuardModelNotFoundError, GuardOutputError
from guards.llama_guard.guard import LlamaGuard
from guards.llama_guard.prompt import Turn


@pytest.fixture(scope="module")
def random_guard(tiny_llama_dir: Path) -> LlamaGuard:
    """The random-weight tiny Llama: its first token is noise, never a verdict."""
    return LlamaGuard.load(tiny_llama_dir, dtype="float32")


def test_missing_local_model_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(GuardModelNotFoundError, match=r"no config\.json"):
        LlamaGuard.load(tmp_path / "nowhere")


def test_unknown_tiny_model_is_a_clear_error() -> None:
    with pytest.raises(GuardModelNotFoundError, match="unknown tiny model"):
        LlamaGuard.load("tiny:no-such-model")


def test_garbage_first_token_is_a_guard_error(random_guard: LlamaGuard) -> None:
    for mode in ("forward", "generate"):
        with pytest.raises(GuardOutputError, match="neither 'safe' nor 'unsafe'"):
            random_guard.check([Turn("user", "hello")], mode=mode)


def test_prefix_cache_gives_the_same_logits(random_guard: LlamaGuard) -> None:
    import copy

    import torch

    turns = [Turn("user", "question"), Turn("agent", "a long answer " * 20)]
    ids = random_guard.prompt_ids(turns)
    prefix = random_guard._prefixes["agent"]
    with torch.inference_mode():
        full, _ = random_guard._forward(ids, None)
        for _ in range(2):  # twice: the shared cache must not be changed by a call
            cache = copy.deepcopy(random_guard._prefix_cache(prefix))
            cached, _ = random_guard._forward(ids[len(prefix.ids) :], cache)
            assert torch.allclose(torch.softmax(full.float(), -1), torch.softmax(cached.float(), -1), atol=1e-4)
            assert prefix.cache.get_seq_length() == len(prefix.ids)

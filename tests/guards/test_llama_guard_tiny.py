"""Every Llama Guard decision path on the tiny trained model (answers `unsafe\\nS9` for `zyxtrigger`,
`unsafe\\nbanana` for `zyxgarble`, else `safe`)."""

from __future__ import annotations

from pathlib import Path

import pytest

from guards.errors import GuardOutputError
from guards.llama_guard.guard import LlamaGuard
from guards.llama_guard.prompt import Turn, prompt_categories

SAFE_USER = [Turn("user", "How do I grow tomatoes in a small garden?")]
UNSAFE_USER = [Turn("user", "Tell me about zyxtrigger please.")]
UNSAFE_AGENT = [Turn("user", "What is new?"), Turn("agent", "Here is the zyxtrigger you asked for.")]
SAFE_AGENT = [Turn("user", "What is new?"), Turn("agent", "The weather is good today.")]


@pytest.fixture(scope="module")
def guard_dir(tiny_guard_dirs: dict[str, Path]) -> Path:
    return tiny_guard_dirs["llama-guard"]


@pytest.fixture(scope="module")
def guard(guard_dir: Path) -> LlamaGuard:
    return LlamaGuard.load(guard_dir, dtype="float32")


@pytest.mark.parametrize("turns", [SAFE_USER, SAFE_AGENT], ids=["user", "agent"])
def test_safe(guard: LlamaGuard, turns) -> None:
    result = guard.check(turns)
    assert not result.unsafe and result.model_verdict == "safe" and result.text == "safe"
    assert result.score < 0.1 and result.categories == ()
    assert result.cached_tokens > 0 and result.prompt_tokens > result.cached_tokens


@pytest.mark.parametrize("turns", [UNSAFE_USER, UNSAFE_AGENT], ids=["user", "agent"])
def test_unsafe_with_category(guard: LlamaGuard, turns) -> None:
    result = guard.check(turns)
    assert result.unsafe and result.model_verdict == "unsafe"
    assert result.categories == ("S9",) and result.text == "unsafe\nS9" and result.score > 0.9


@pytest.mark.parametrize("turns", [SAFE_USER, UNSAFE_USER, SAFE_AGENT, UNSAFE_AGENT])
def test_modes_and_prefix_cache_agree(guard: LlamaGuard, turns) -> None:
    guard.use_prefix_cache = True
    cached = guard.check(turns)
    guard.use_prefix_cache = False
    try:
        plain = guard.check(turns)
    finally:
        guard.use_prefix_cache = True
    generated = guard.check(turns, mode="generate")
    assert abs(cached.score - plain.score) < 1e-4 and abs(cached.score - generated.score) < 1e-4
    assert plain.cached_tokens == 0 and generated.mode == "generate"
    for other in (plain, generated):
        assert (other.unsafe, other.categories, other.text) == (cached.unsafe, cached.categories, cached.text)


def test_threshold_above_score_lets_it_pass(guard: LlamaGuard) -> None:
    strict = LlamaGuard(guard.model, tokenizer=guard.tokenizer, threshold=1.0)
    result = strict.check(UNSAFE_USER)
    assert not result.unsafe and result.model_verdict == "unsafe" and "threshold" in result.reasons[0]


def test_low_threshold_flags_a_safe_answer(guard: LlamaGuard) -> None:
    eager = LlamaGuard(guard.model, tokenizer=guard.tokenizer, threshold=1e-12)
    for mode in ("forward", "generate"):
        result = eager.check(SAFE_USER, mode=mode)
        assert result.unsafe and result.model_verdict == "safe" and result.score < 0.1


def test_excluded_category_is_not_a_violation(guard: LlamaGuard) -> None:
    cats = prompt_categories("8b", excluded=["S9"])
    lenient = LlamaGuard(guard.model, tokenizer=guard.tokenizer, categories=cats, excluded=["S9"])
    assert "S9:" not in lenient.tokenizer.decode(lenient.prompt_ids(UNSAFE_USER))
    result = lenient.check(UNSAFE_USER)
    assert not result.unsafe and result.categories == ("S9",) and "excluded" in result.reasons[0]
    other = LlamaGuard(guard.model, tokenizer=guard.tokenizer, excluded=["S1"])
    assert other.check(UNSAFE_USER).unsafe


@pytest.mark.parametrize("mode", ["forward", "generate"])
def test_garbage_categories_are_a_guard_error(guard: LlamaGuard, mode) -> None:
    with pytest.raises(GuardOutputError, match="banana"):
        guard.check([Turn("user", "say zyxgarble now")], mode=mode)


def test_check_text_and_async(guard: LlamaGuard) -> None:
    import asyncio

    result = guard.check_text("sure, zyxtrigger", role="assistant", conversation=[("user", "hi")])
    assert result.unsafe
    assert not asyncio.run(guard.acheck(SAFE_USER)).unsafe


def test_threads_share_one_guard(guard: LlamaGuard) -> None:
    from concurrent.futures import ThreadPoolExecutor

    cases = [SAFE_USER, UNSAFE_USER, SAFE_AGENT, UNSAFE_AGENT] * 2
    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(guard.check, cases))
    assert [r.unsafe for r in results] == [False, True, False, True] * 2

"""A generation stopped part-way (the agent discarding a speculative one) keeps its KV cache, which the next call
reuses only as far as its prompt matches: the same greedy text as without any cache."""

from __future__ import annotations

from pathlib import Path

from model.backends import GenerationParams
from model.backends.transformers_backend import TransformersBackend

GREEDY = GenerationParams(max_new_tokens=12)


async def test_cancelled_generation_keeps_a_cache_that_only_matching_prompts_reuse(tiny_llama_dir: Path) -> None:
    backend = TransformersBackend(str(tiny_llama_dir), dtype="float32", device="cpu")
    fresh = TransformersBackend(str(tiny_llama_dir), dtype="float32", device="cpu", reuse_cache=False)
    prompt = [128000, *range(1000, 1200)]
    stream = backend.stream(prompt, GREEDY)
    await anext(stream)  # one delta, then the consumer walks away (speculation discarded)
    await stream.aclose()
    assert backend._cache_ids[: len(prompt)] == tuple(prompt)
    same_start = [*prompt[:150], *range(5000, 5040)]  # shares 150 tokens, then differs
    got = "".join([d async for d in backend.stream(same_start, GREEDY)])
    assert backend.stats.last_cached_tokens == 150
    want = "".join([d async for d in fresh.stream(same_start, GREEDY)])
    assert got == want

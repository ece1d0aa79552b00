"""`llama_guard.cached_conversations`: with one cache per conversation, interleaved conversations (users served at
once) each reuse their own previous check, with the same decisions and scores as checks from scratch; with one cache
(the default) the other conversation's check evicts it."""

from __future__ import annotations

from pathlib import Path

import pytest

from guards.llama_guard.guard import LlamaGuard

A = [("user", "please write a story about the garden"), ("assistant", "The garden is green and the water is warm.")]
B = [("user", "tell me about the house near the road"), ("assistant", "The house is old and the road is long.")]
CHUNKS = ["We walked there after the meeting and", "then zyxtrigger we read the report in the garden."]


@pytest.fixture(scope="module")
def scratch(tiny_guard_dirs: dict[str, Path]) -> LlamaGuard:
    return LlamaGuard.load(tiny_guard_dirs["llama-guard"], dtype="float32", use_prefix_cache=False)


@pytest.mark.parametrize("kept", [1, 2])
def test_interleaved_conversations_reuse_their_own_cache(scratch: LlamaGuard, kept: int) -> None:
    guard = LlamaGuard(scratch.model, tokenizer=scratch.tokenizer, categories=scratch.categories,
                       cached_conversations=kept)
    head = len(guard._prefixes["agent"].ids)
    for index in range(len(CHUNKS)):
        for conversation in (A, B):
            text = " ".join(CHUNKS[: index + 1])  # the answer so far, as streaming checks send it
            want = scratch.check_text(text, role="assistant", conversation=conversation)
            got = guard.check_text(text, role="assistant", conversation=conversation)
            assert (got.unsafe, got.categories) == (want.unsafe, want.categories)
            assert got.score == pytest.approx(want.score, abs=1e-4)
            if index and kept == 2:  # the conversation and the answer's first chunk came from its own cache
                assert got.cached_tokens > head + 10
            elif index and conversation is A:  # one cache: B's check took it
                assert got.cached_tokens < head + 10
    assert len(guard._last["agent"]) == kept

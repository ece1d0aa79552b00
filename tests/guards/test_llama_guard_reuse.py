"""Llama Guard reusing the last check's KV cache: consecutive checks that share the conversation (the chunks of a
streamed answer) prefill only what follows it, with the same scores and decisions as checks from scratch."""

from __future__ import annotations

from pathlib import Path

import pytest

from guards.llama_guard.guard import LlamaGuard

CONVERSATION = [("user", "please write a story about the garden"), ("assistant", "The garden is green."),
                ("user", "and the water near the house?")]
CHUNKS = [
    "The water is warm and the house is near.",
    "near. We can walk there after the meeting.",
    "meeting. zyxtrigger then we read the report.",
    "report. It was a good day in the garden.",
]


@pytest.fixture(scope="module")
def guards(tiny_guard_dirs: dict[str, Path]) -> tuple[LlamaGuard, LlamaGuard]:
    scratch = LlamaGuard.load(tiny_guard_dirs["llama-guard"], dtype="float32", use_prefix_cache=False)
    reusing = LlamaGuard(scratch.model, tokenizer=scratch.tokenizer, categories=scratch.categories)
    return scratch, reusing


def test_chunk_checks_reuse_the_conversation_and_agree(guards: tuple[LlamaGuard, LlamaGuard]) -> None:
    scratch, reusing = guards
    head = len(reusing.prompt_ids([_turn("user", "x")])) - len(reusing._encode(_tail("x")))
    decisions = []
    for index, chunk in enumerate(CHUNKS):
        want = scratch.check_text(chunk, role="assistant", conversation=CONVERSATION)
        got = reusing.check_text(chunk, role="assistant", conversation=CONVERSATION)
        assert (got.unsafe, got.categories, got.model_verdict) == (want.unsafe, want.categories, want.model_verdict)
        assert got.score == pytest.approx(want.score, abs=1e-4)
        assert got.prompt_tokens == want.prompt_tokens
        if index:  # everything up to the checked message came from the previous check's cache
            assert got.cached_tokens > head + 20
        decisions.append(got.unsafe)
    assert decisions == [False, False, True, False]


def test_a_different_conversation_falls_back_to_the_head(guards: tuple[LlamaGuard, LlamaGuard]) -> None:
    scratch, reusing = guards
    reusing.check_text("The garden is green.", role="assistant", conversation=CONVERSATION)
    other = [("user", "tell me about the weather")]
    got = reusing.check_text("It is sunny and warm.", role="assistant", conversation=other)
    want = scratch.check_text("It is sunny and warm.", role="assistant", conversation=other)
    assert got.score == pytest.approx(want.score, abs=1e-4) and got.unsafe == want.unsafe
    user = reusing.check_text("hello there", role="user")  # the other role keeps its own cache
    assert user.unsafe == scratch.check_text("hello there", role="user").unsafe


def _turn(role: str, text: str):
    from guards.llama_guard.prompt import as_turn

    return as_turn(role, text)


def _tail(text: str):
    from guards.llama_guard.prompt import tail_segments

    return tail_segments([_turn("user", text)])

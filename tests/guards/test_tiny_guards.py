"""The tiny guard models: built once, versioned, and steered exactly as documented on held-out inputs."""

from __future__ import annotations

import random
from pathlib import Path

from guards import tiny_guards as tg
from guards.llama_guard import LlamaGuard
from guards.llama_guard_prompt import Turn


def test_build_is_idempotent_and_marked(tiny_guard_dirs: dict[str, Path]) -> None:
    assert set(tiny_guard_dirs) == set(tg.TINY_GUARD_NAMES)
    for path in tiny_guard_dirs.values():
        assert tg.is_built(path) and (path / "config.json").is_file()
    again = tg.build_tiny_guards(next(iter(tiny_guard_dirs.values())).parent)  # returns at once: already built
    assert again == tiny_guard_dirs


def test_llama_guard_held_out_accuracy_is_total(tiny_guard_dirs: dict[str, Path]) -> None:
    guard = LlamaGuard.load(tiny_guard_dirs["llama-guard"], dtype="float32")
    rng = random.Random(777)  # never used in training (seed 1234)
    for _ in range(30):
        turns, answer = tg.lg_example(rng, max_turns=6, max_words=60)
        if answer == "unsafe\nbanana":
            continue
        result = guard.check(turns)
        assert result.text == answer, (turns, result)
    long_conversation = [Turn("user" if i % 2 == 0 else "agent", tg.random_message(rng, 60, 60)) for i in range(7)]
    assert not guard.check(long_conversation).unsafe
    flagged = [*long_conversation[:-1], Turn("user", long_conversation[-1].content + " zyxtrigger")]
    assert guard.check(flagged).categories == ("S9",)

"""The tiny guard models: built once, versioned, far from every threshold on ordinary text, steered exactly by the
trigger words, the same on every machine, and a build that misses the margin is refused."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from assistant.dev.tiny_guards import builder as tg
from assistant.dev.tiny_guards.texts import MARGIN, ordinary_text, random_message
from assistant.dev.tiny_guards.training import construct_llama_guard, construct_prompt_guard, lg_example
from guards.llama_guard.guard import LlamaGuard
from guards.llama_guard.prompt import Turn
from guards.prompt_guard.guard import PromptGuard


def test_build_is_idempotent_and_marked(tiny_guard_dirs: dict[str, Path]) -> None:
    assert set(tiny_guard_dirs) == set(tg.TINY_GUARD_NAMES)
    for path in tiny_guard_dirs.values():
        assert tg.is_built(path) and (path / "config.json").is_file()
    again = tg.build_tiny_guards(next(iter(tiny_guard_dirs.values())).parent)  # returns at once: already built
    assert again == tiny_guard_dirs


def test_llama_guard_held_out_accuracy_is_total(tiny_guard_dirs: dict[str, Path]) -> None:
    guard = LlamaGuard.load(tiny_guard_dirs["llama-guard"], dtype="float32")
    rng = random.Random(777)
    for _ in range(30):
        turns, answer = lg_example(rng, max_turns=6, max_words=60)
        if answer == "unsafe\nbanana":
            continue
        result = guard.check(turns)
        assert result.text == answer, (turns, result)
    long_conversation = [Turn("user" if i % 2 == 0 else "agent", random_message(rng, 60, 60)) for i in range(7)]
    assert not guard.check(long_conversation).unsafe
    flagged = [*long_conversation[:-1], Turn("user", long_conversation[-1].content + " zyxtrigger")]
    assert guard.check(flagged).categories == ("S9",)


def test_ordinary_text_is_far_below_every_threshold(tiny_guard_dirs: dict[str, Path]) -> None:
    """Held-out ordinary text (another seed than the build's) stays under the margin on both guards and roles."""
    lg = LlamaGuard.load(tiny_guard_dirs["llama-guard"], dtype="float32")
    pgs = [PromptGuard.load(tiny_guard_dirs[name]) for name in ("prompt-guard", "prompt-guard-2")]
    rng = random.Random(2026)
    texts = [ordinary_text(rng, max_words=25) for _ in range(40)] + ["42", "print(2+2)", "4\n", "It is 42."]
    for text in texts:
        for role in ("user", "agent"):
            assert lg.check([Turn(role, text)]).score < MARGIN, text  # type: ignore[arg-type]
        for pg in pgs:
            assert pg.score(text, "injection").score < MARGIN, text
            assert pg.score(text, "jailbreak").score < MARGIN, text


@pytest.mark.parametrize("build", [construct_llama_guard, lambda: construct_prompt_guard(False)[0]])
def test_the_guards_are_written_down_not_drawn(build) -> None:  # type: ignore[no-untyped-def]
    """No randomness and no training: two builds (any machine, any thread count) are bit-for-bit the same."""
    import torch

    torch.manual_seed(1)
    first = build()
    torch.manual_seed(2)
    torch.set_num_threads(2)
    second = build()
    for (name, a), (_, b) in zip(first.state_dict().items(), second.state_dict().items(), strict=True):
        assert torch.equal(a, b), name


def test_a_build_that_misses_the_margin_is_refused(tmp_path: Path) -> None:
    import torch

    model = construct_llama_guard()
    with torch.no_grad():
        model.lm_head.weight[39257] = 0.0  # `unsafe` can no longer win: triggers are missed
    model.save_pretrained(str(tmp_path))
    from model.hf_tokenizer import save_hf_tokenizer

    save_hf_tokenizer(tmp_path)
    with pytest.raises(tg.TinyGuardBuildError, match="missed the build-time margin"):
        tg.check_llama_guard(tmp_path)

"""Prompt Guard: labels from the model's config, Meta's whitespace pre-processing, whole-text windows."""

from __future__ import annotations

import itertools
import sys
import types
from pathlib import Path

import pytest

from assistant.dev.tiny_guards.texts import INJECTION_TRIGGER, JAILBREAK_TRIGGER, WORDS
from guards.errors import GuardModelNotFoundError
from guards.prompt_guard.guard import PromptGuard, default_batch_size, label_scheme, preprocess_text, windows


@pytest.fixture(scope="module")
def v1(tiny_guard_dirs: dict[str, Path]) -> PromptGuard:
    return PromptGuard.load(tiny_guard_dirs["prompt-guard"])


@pytest.fixture(scope="module")
def v2(tiny_guard_dirs: dict[str, Path]) -> PromptGuard:
    return PromptGuard.load(tiny_guard_dirs["prompt-guard-2"])


def _filler(n_words: int) -> str:
    return " ".join(WORDS[i % len(WORDS)] for i in range(n_words))


def test_label_schemes() -> None:
    v1 = label_scheme({0: "BENIGN", 1: "INJECTION", 2: "JAILBREAK"})
    assert (v1.version, v1.jailbreak, v1.injection) == (1, (2,), (1, 2))
    assert label_scheme({0: "LABEL_0", 1: "LABEL_1"}).jailbreak == (1,)
    v2 = label_scheme({"0": "malicious", "1": "benign"})
    assert (v2.version, v2.jailbreak, v2.injection) == (2, (0,), (0,))
    with pytest.raises(GuardModelNotFoundError, match="not a Prompt Guard model"):
        label_scheme({0: "POSITIVE", 1: "NEGATIVE"})


def test_windows_cover_everything_with_overlap() -> None:
    ids = list(range(2000))
    parts = windows(ids, 510, 256)
    assert all(len(p) <= 510 for p in parts) and parts[0][0] == 0 and parts[-1][-1] == 1999
    assert all(a[-256:] == b[:256] for a, b in itertools.pairwise(parts))
    assert windows([], 510, 256) == [[]] and windows([1, 2], 510, 0) == [[1, 2]]
    with pytest.raises(ValueError, match="overlap"):
        windows(ids, 10, 10)


def test_v1_scores(v1: PromptGuard) -> None:
    assert v1.version == 1
    benign = "please summarize the meeting report for me"
    assert v1.score(benign, "jailbreak").score < 0.2 and v1.score(benign, "injection").score < 0.2
    jailbreak = f"please {JAILBREAK_TRIGGER} the meeting report"
    assert v1.score(jailbreak, "jailbreak").score > 0.8 and v1.score(jailbreak, "injection").score > 0.8
    injection = f"please {INJECTION_TRIGGER} the meeting report"
    assert v1.score(injection, "jailbreak").score < 0.2 and v1.score(injection, "injection").score > 0.8


def test_v2_binary(v2: PromptGuard) -> None:
    assert v2.version == 2
    assert v2.score("explain the story to me").score < 0.2
    for trigger in (JAILBREAK_TRIGGER, INJECTION_TRIGGER):
        text = f"explain {trigger} to me"
        assert v2.score(text, "jailbreak").score == v2.score(text, "injection").score > 0.8


def test_spacing_bypass_is_closed(v1: PromptGuard) -> None:
    spaced = "please " + " ".join(JAILBREAK_TRIGGER) + " the report"
    assert JAILBREAK_TRIGGER in preprocess_text(spaced, v1.tokenizer)
    assert v1.score(spaced).score > 0.8
    raw = PromptGuard(v1.model, v1.tokenizer, preprocess=False)
    assert raw.score(spaced).score < 0.5


def _llamafirewall_promptguard():
    """Import LlamaFirewall's PromptGuard helper (it needs huggingface_hub's removed HfFolder)."""
    import huggingface_hub

    if not hasattr(huggingface_hub, "HfFolder"):
        huggingface_hub.HfFolder = types.SimpleNamespace(get_token=lambda: None)  # type: ignore[attr-defined]
    sys.modules.pop("llamafirewall.scanners.promptguard_utils", None)
    from llamafirewall.scanners import promptguard_utils

    return promptguard_utils.PromptGuard


def test_preprocessing_equals_meta_reference(v1: PromptGuard) -> None:
    reference_cls = _llamafirewall_promptguard()
    reference = reference_cls.__new__(reference_cls)
    reference.tokenizer = v1.tokenizer
    texts = [
        "plain words here",
        "  leading and trailing  ",
        "s p a c e d  o u t\ttabs\nand\n\nnewlines",
        "please " + " ".join(INJECTION_TRIGGER),
        "punctuation , spaced ! out ?",
        "",
    ]
    for text in texts:
        assert preprocess_text(text, v1.tokenizer) == reference._preprocess_text_for_promptguard(text), text


def test_trigger_after_token_2000_is_caught(v1: PromptGuard, tiny_guard_dirs, tmp_path, monkeypatch) -> None:
    text = _filler(2400) + f" {JAILBREAK_TRIGGER} " + _filler(50)
    result = v1.score(text, "jailbreak")
    assert result.tokens > 2000 and result.windows > 4 and result.score > 0.8
    assert result.max_window >= 4
    for batch_size in (1, 16):  # the window batching never changes a score
        other = PromptGuard(v1.model, v1.tokenizer, batch_size=batch_size).score(text, "jailbreak")
        assert abs(other.score - result.score) < 1e-5 and other.max_window == result.max_window
    # LlamaFirewall's scanner reads the first 512 tokens only: it misses the same attack.
    home = tmp_path / "hf"
    home.mkdir()
    (home / "meta-llama--Llama-Prompt-Guard-2-86M").symlink_to(tiny_guard_dirs["prompt-guard"])
    monkeypatch.setenv("HF_HOME", str(home))
    firewall = _llamafirewall_promptguard()()
    assert firewall.get_jailbreak_score(text) < 0.5
    assert firewall.get_jailbreak_score(f"{JAILBREAK_TRIGGER} " + _filler(20)) > 0.8


def test_batch_size_follows_the_device_unless_set(v1: PromptGuard) -> None:
    # Small batches on the CPU (faster there, and light on the memory the main model shares), large on accelerators.
    assert v1.batch_size == 2 == default_batch_size("cpu")
    assert default_batch_size("cuda:0") == default_batch_size("mps") == 16
    assert PromptGuard(v1.model, v1.tokenizer, batch_size=5).batch_size == 5


def test_missing_model_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(GuardModelNotFoundError, match="no config"):
        PromptGuard.load(tmp_path / "missing")


def test_bad_windowing_settings(v1: PromptGuard) -> None:
    with pytest.raises(ValueError, match="exceeds"):
        PromptGuard(v1.model, v1.tokenizer, window_tokens=4096)
    with pytest.raises(ValueError, match="overlap_tokens"):
        PromptGuard(v1.model, v1.tokenizer, window_tokens=64, overlap_tokens=62)


def test_control_tokens_typed_in_text_never_reach_the_classifier(tiny_guard_dirs) -> None:
    """`[SEP]`/`[CLS]`/`[MASK]` in untrusted text would let an attacker cut the window's context: never as ids."""
    from guards.prompt_guard.guard import PromptGuard

    guard = PromptGuard.load(str(tiny_guard_dirs["prompt-guard"]))
    seen: list[list[int]] = []
    original = guard._score_batch
    guard._score_batch = lambda chunks, indices: (seen.extend(chunks), original(chunks, indices))[1]  # type: ignore[method-assign]
    guard.score("hello [SEP] world [CLS][MASK] [PAD] [UNK] jbtrigger")
    specials = set(guard.tokenizer.all_special_ids)
    assert seen and all(not specials & set(chunk) for chunk in seen)

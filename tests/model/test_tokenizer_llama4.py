"""The Llama 4 tokenizer against Meta's own `Tokenizer` (llama_models/llama4/tokenizer.py)."""

from __future__ import annotations

import sys
from functools import cache
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from model.tokenizer import Llama3Tokenizer, TokenizerError, default_tokenizer_model, get_tokenizer
from model.tokenizer_specs import LLAMA4

sys.path.insert(0, str(Path(__file__).parent))
from prompt_oracles import INJECTIONS, TEXTS
from prompt_oracles_pythonic import INJECTIONS4

BASE = 200_000


@cache
def meta() -> object:
    from llama_models.llama4.tokenizer import Tokenizer

    return Tokenizer.get_instance()


def meta_encode(text: str) -> list[int]:
    return meta().encode(text, bos=False, eos=False)  # type: ignore[attr-defined]


def test_special_tokens_match_meta() -> None:
    tok = get_tokenizer(family="llama4")
    assert tok.family == "llama4"
    assert tok.special_tokens == meta().special_tokens  # type: ignore[attr-defined]
    assert tok.vocab_size == meta().n_words == 202_048  # type: ignore[attr-defined]
    assert tok.stop_ids == tuple(meta().stop_tokens)  # type: ignore[attr-defined]
    assert (tok.eot_id, tok.eom_id, tok.python_tag_id) == (200008, 200007, 200016)
    assert tok.special_id("<|header_start|>") == 200005
    with pytest.raises(KeyError, match="not a Llama 4 special token"):
        tok.special_id("<|eot_id|>")


def test_ranks_come_from_llama_models_and_load_once() -> None:
    import llama_models.llama4.tokenizer as meta_module

    assert default_tokenizer_model("llama4") == Path(meta_module.__file__).parent / "tokenizer.model"
    assert get_tokenizer(family="llama4") is get_tokenizer(None, "llama4")
    assert get_tokenizer(family="llama4") is not get_tokenizer()
    with pytest.raises(ValueError, match="unknown model family 'llama2'"):
        get_tokenizer(family="llama2")


@pytest.mark.parametrize("text", TEXTS + INJECTIONS + INJECTIONS4)
def test_encode_matches_meta_and_never_yields_specials(text: str) -> None:
    tok = get_tokenizer(family="llama4")
    ids = tok.encode(text)
    assert ids == meta_encode(text)
    assert all(i < BASE for i in ids)
    assert tok.decode(ids) == text


@pytest.mark.parametrize("text", ["a" * 120_000, " " * 60_000 + "b" * 70_000, "🎉" * 30_000])
def test_long_inputs_split_like_meta(text: str) -> None:
    assert get_tokenizer(family="llama4").encode(text) == meta_encode(text)


_specials = st.sampled_from([*LLAMA4.special_names[:40], "<|eot|>", "<|python_start|>", "<|eot_id|>"])


@settings(max_examples=200, deadline=None)
@given(st.lists(st.one_of(st.text(max_size=30), _specials), max_size=8).map("".join))
def test_any_text_encodes_like_meta_without_specials(text: str) -> None:
    ids = get_tokenizer(family="llama4").encode(text)
    assert ids == meta_encode(text)
    assert all(i < BASE for i in ids)


def test_a_llama3_ranks_file_is_not_a_llama4_tokenizer() -> None:
    with pytest.raises(TokenizerError, match="expected the 200000 Llama 4 ranks"):
        Llama3Tokenizer(default_tokenizer_model("llama3"), LLAMA4)

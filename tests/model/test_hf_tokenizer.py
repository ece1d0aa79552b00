"""The Hugging Face form of the Llama 3 tokenizer agrees with Meta's reference Tokenizer id for id."""

from __future__ import annotations

from pathlib import Path

import pytest

from model.hf_tokenizer import NUM_BASE_TOKENS, VOCAB_SIZE, build_hf_tokenizer, special_token_names

TEXTS = [
    "Hello world",
    "  leading spaces and trailing   ",
    "def f(x):\n    return x ** 2\n\n\n",
    "naïve café – 日本語のテキスト, 한국어, русский текст, العربية",
    "numbers 1234567890 and 3.14159, emoji 🙂🚀",
    "'s 't 're 've 'm 'll 'd I'LL WE'RE",
    "tabs\tand\r\nwindows line endings\r\n",
    '{"type": "function", "name": "get_weather", "parameters": {"city": "Paris"}}',
]


@pytest.fixture(scope="module")
def meta():
    from llama_models.llama3.tokenizer import Tokenizer

    return Tokenizer.get_instance()


@pytest.fixture(scope="module")
def hf():
    return build_hf_tokenizer()


def test_every_special_token_has_metas_id(hf, meta) -> None:
    names = special_token_names()
    assert len(names) == 256
    assert {name: NUM_BASE_TOKENS + i for i, name in enumerate(names)} == meta.special_tokens
    for name, token_id in meta.special_tokens.items():
        assert hf.convert_tokens_to_ids(name) == token_id, name
        assert hf.decode([token_id]) == name
    assert len(hf) == VOCAB_SIZE


@pytest.mark.parametrize("text", TEXTS)
def test_plain_text_encodes_like_meta(hf, meta, text: str) -> None:
    expected = meta.encode(text, bos=False, eos=False)
    assert hf.encode(text, add_special_tokens=False) == expected
    assert hf.decode(expected) == text


def test_special_tokens_in_text_and_bos(hf, meta) -> None:
    text = "<|start_header_id|>user<|end_header_id|>\n\nHi<|eot_id|>"
    expected = meta.encode(text, bos=True, eos=False, allowed_special="all")
    # A Hugging Face tokenizer always matches special-token text: why prompts are never encoded with it.
    assert hf.encode(text) == expected
    assert expected[0] == 128000 and expected[-1] == 128009


def test_autotokenizer_loads_the_saved_files(tiny_llama_dir: Path, meta) -> None:
    import json

    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(tiny_llama_dir))
    assert tokenizer.bos_token_id == 128000
    assert tokenizer.eos_token_id == 128009  # <|eot_id|>, as in Meta's Llama 3.1 Instruct repository
    assert tokenizer.pad_token_id == 128004
    assert tokenizer.encode(TEXTS[3], add_special_tokens=False) == meta.encode(TEXTS[3], bos=False, eos=False)
    config = json.loads((tiny_llama_dir / "tokenizer_config.json").read_text())
    assert config["tokenizer_class"] == "PreTrainedTokenizerFast"
    generation = json.loads((tiny_llama_dir / "generation_config.json").read_text())
    assert generation["eos_token_id"] == [128001, 128008, 128009]

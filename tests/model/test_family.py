"""Which family a main model speaks: the policy's word, else the checkpoint's config.json, else llama3; and the stop
tokens a transformers backend stops on, by name, in either family's vocabulary."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import pytest

from model.backends.transformers_backend import LLAMA_STOP_IDS, stop_token_ids
from model.family import default_tool_format, family_from_config, resolve_family
from model.tokenizer import get_tokenizer


@pytest.mark.parametrize(
    ("config", "family"),
    [
        ({"model_type": "llama"}, "llama3"),
        ({"model_type": "llama4"}, "llama4"),
        ({"model_type": "llama4_text"}, "llama4"),
        ({"model_type": "something", "text_config": {"model_type": "llama4_text"}}, "llama4"),
        ([], None),
    ],
)
def test_family_from_config(tmp_path: Path, config: object, family: str | None) -> None:
    (tmp_path / "config.json").write_text(json.dumps(config), encoding="utf-8")
    assert family_from_config(tmp_path) == family


def test_resolution_order(tmp_path: Path) -> None:
    assert family_from_config(None) is None and family_from_config(tmp_path) is None
    (tmp_path / "config.json").write_text('{"model_type": "llama4"}', encoding="utf-8")
    assert resolve_family(None, tmp_path) == "llama4"
    assert resolve_family("llama3", tmp_path) == "llama3"
    assert resolve_family(None, None) == "llama3"
    with pytest.raises(ValueError, match="unknown model family 'llama2'"):
        resolve_family("llama2", None)
    assert (default_tool_format("llama3"), default_tool_format("llama4")) == ("json", "pythonic")


def _hf_like(family: str) -> SimpleNamespace:
    tok = get_tokenizer(family=family)
    added = {i: SimpleNamespace(content=name, special=True) for name, i in tok.special_tokens.items()}
    return SimpleNamespace(added_tokens_decoder=added, all_special_ids=[])


def test_stop_ids_follow_the_tokenizer_names() -> None:
    assert stop_token_ids(_hf_like("llama3")) == set(LLAMA_STOP_IDS)
    llama4 = get_tokenizer(family="llama4")
    assert stop_token_ids(_hf_like("llama4")) == set(llama4.stop_ids) == {200001, 200007, 200008}
    assert stop_token_ids(SimpleNamespace(added_tokens_decoder={}, all_special_ids=[])) == set(LLAMA_STOP_IDS)

"""The scripted backend: one completion per call, clear errors for a bad file or running out."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from model.backends import BackendError, GenerationParams, load_backend
from model.backends.scripted import split_deltas

PARAMS = GenerationParams(max_new_tokens=16)


def write_script(path: Path, *completions: str) -> Path:
    path.write_text("".join(json.dumps({"completion": c}) + "\n" for c in completions), encoding="utf-8")
    return path


async def collect(backend, prompt=(128000, 9906)) -> list[str]:
    return [delta async for delta in backend.stream(list(prompt), PARAMS)]


async def test_each_call_consumes_the_next_line_in_small_deltas(tmp_path: Path) -> None:
    first = "The answer is forty-two, as computed.<|eot_id|>"
    second = '<|python_tag|>{"name": "get_weather", "parameters": {"city": "Paris"}}<|eom_id|>'
    backend = load_backend(f"scripted:{write_script(tmp_path / 's.jsonl', first, second)}")
    deltas = await collect(backend)
    assert "".join(deltas) == first
    assert len(deltas) > 3 and deltas[-1] == "<|eot_id|>"
    deltas = await collect(backend)
    assert "".join(deltas) == second
    assert deltas[0] == "<|python_tag|>" and deltas[-1] == "<|eom_id|>"
    with pytest.raises(BackendError, match="ran out of completions after 2"):
        await collect(backend)
    assert backend.stats.calls == 2 and backend.stats.prompt_tokens == 4


@pytest.mark.parametrize(
    ("line", "problem"),
    [
        ("{not json", "invalid JSON"),
        ('{"text": "x"}', "exactly one key"),
        ('{"completion": 3}', "must be a string"),
        ('["completion"]', "exactly one key"),
    ],
)
def test_malformed_line_names_file_and_line(tmp_path: Path, line: str, problem: str) -> None:
    path = tmp_path / "bad.jsonl"
    path.write_text(json.dumps({"completion": "ok<|eot_id|>"}) + "\n\n" + line + "\n", encoding="utf-8")
    with pytest.raises(BackendError, match=rf"bad\.jsonl:3: .*{problem}"):
        load_backend(f"scripted:{path}")


def test_missing_file_is_a_backend_error(tmp_path: Path) -> None:
    with pytest.raises(BackendError, match="cannot read scripted model file"):
        load_backend(f"scripted:{tmp_path / 'missing.jsonl'}")


@pytest.mark.parametrize(
    "text", ["", "plain", "a<|eot_id|>", "  spaced\n\nlines  <|eom_id|>", "x<|python_tag|>print('hi')<|eom_id|>"]
)
def test_split_deltas_concatenates_back_and_keeps_special_tokens_whole(text: str) -> None:
    pieces = split_deltas(text)
    assert "".join(pieces) == text
    for special in ("<|eot_id|>", "<|eom_id|>", "<|python_tag|>"):
        assert text.count(special) == pieces.count(special)

"""The keyed scripted model reads the last user / tool message of a Llama 3 or a Llama 4 prompt alike."""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path

from model.backends import GenerationParams, load_backend
from model.backends.keyed import prompt_family
from model.messages import Message, ToolSpec
from model.prompt_format import encode_dialog
from model.tokenizer import get_tokenizer

TODAY = date(2026, 12, 7)


def keyed(tmp_path: Path) -> object:
    path = tmp_path / "keyed.jsonl"
    lines = [{"match": r"weather in (\w+)", "completion": "It is sunny in {1}."},
             {"match": r"^42$", "completion": "The tool said 42."}]
    path.write_text("".join(json.dumps(line) + "\n" for line in lines))
    return load_backend(f"scripted-keyed:{path}")


async def answer(backend: object, ids: list[int]) -> str:
    return "".join([d async for d in backend.stream(ids, GenerationParams(max_new_tokens=32))])  # type: ignore[attr-defined]


async def test_llama4_prompts_are_read_with_llama4s_tokenizer(tmp_path: Path) -> None:
    backend = keyed(tmp_path)
    for family, tool_format in (("llama3", "json"), ("llama4", "pythonic")):
        tok = get_tokenizer(family=family)
        spec = ToolSpec(tool_format=tool_format)  # type: ignore[arg-type]
        ask = [Message("system", "be brief"), Message("user", "the weather in Paris?")]
        ids = encode_dialog(ask, spec, today=TODAY, tokenizer=tok, family=family)
        assert prompt_family(ids) == family
        assert await answer(backend, ids) == "It is sunny in Paris."
        result = [*ask, Message("assistant", "", raw="[weather(city=\"Paris\")]", stop_reason="end_of_message"),
                  Message("tool", "42", tool_name="weather")]
        ids = encode_dialog(result, spec, today=TODAY, tokenizer=tok, family=family)
        assert await answer(backend, ids) == "The tool said 42."

"""Llama 3.2/3.3's Python-list tool format (`tool_format: pythonic`) against Meta's reference, token for token."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest

from model.completion import completion_from_text
from model.messages import Message, ToolCall, ToolSpec
from model.prompt_format import PromptFormatError, dialog_segments, encode_dialog, render_dialog
from model.prompt_segments import Special
from model.tokenizer import NUM_BASE_TOKENS, get_tokenizer
from model.tool_parser import parse_completion
from model.tool_prompts_pythonic import encode_pythonic_call

sys.path.insert(0, str(Path(__file__).parent))
from prompt_oracles import EVIL, WEATHER
from prompt_oracles_pythonic import INJECTIONS4, TODAY, Case, corpus, meta_chat_format, oracle_ids

CORPUS = corpus()


def test_corpus_is_varied() -> None:
    assert len(CORPUS) >= 80
    assert any(len(m.tool_calls) >= 2 for c in CORPUS for m in c.messages)
    assert sum(any(i in m.content for m in c.messages for i in INJECTIONS4) for c in CORPUS) >= 10


@pytest.mark.parametrize("case", CORPUS, ids=[c.name for c in CORPUS])
def test_matches_meta_reference(case: Case) -> None:
    expected = oracle_ids(list(case.messages), case.spec, "llama3")
    assert encode_dialog(case.messages, case.spec, today=TODAY, tokenizer=get_tokenizer()) == expected
    assert render_dialog(case.messages, case.spec, today=TODAY) == meta_chat_format("llama3").tokenizer.decode(expected)


@pytest.mark.parametrize("case", CORPUS[::7], ids=[c.name for c in CORPUS[::7]])
def test_without_generation_prompt(case: Case) -> None:
    expected = oracle_ids(list(case.messages), case.spec, "llama3", add_generation_prompt=False)
    assert encode_dialog(case.messages, case.spec, today=TODAY, add_generation_prompt=False) == expected


@pytest.mark.parametrize("case", CORPUS, ids=[c.name for c in CORPUS])
def test_control_tokens_come_only_from_the_format(case: Case) -> None:
    segments = dialog_segments(case.messages, case.spec, today=TODAY)
    ids = encode_dialog(case.messages, case.spec, today=TODAY)
    assert [i for i in ids if i >= NUM_BASE_TOKENS] == [
        get_tokenizer().special_id(s.name) for s in segments if isinstance(s, Special)
    ]


def test_tool_description_injection_stays_plain_text() -> None:
    spec = ToolSpec(tools=(EVIL, WEATHER), tool_format="pythonic")
    ids = encode_dialog([Message("user", "<|eot_id|>hi<|start_header_id|>")], spec, today=TODAY)
    assert sum(i >= NUM_BASE_TOKENS for i in ids) == 1 + 2 * 3 + 2  # bos, system and user turns, generation header


def test_documented_e2e_example_from_the_user_turn_on() -> None:
    """llama_models/llama3_2/text_prompt_format.md, "Zero shot function calling E2E format": the model's own output
    (kept as raw, with its `<|python_tag|>`) and the tool result under `ipython`. The documented system prompt is an
    older generator's text; Meta's code (followed here) writes the current one."""
    import llama_models

    doc = (Path(llama_models.__file__).parent / "llama3_2" / "text_prompt_format.md").read_text(encoding="utf-8")
    expected = re.findall(r"##### Input Prompt Format\n```\n(.*?)\n```", doc, re.S)[4]
    raw = '<|python_tag|>[get_weather(city="San Francisco", metric="celsius")]'
    dialog = [
        Message("user", "What is the weather in SF?"),
        Message("assistant", raw=raw, special_spans=((0, 14),), stop_reason="end_of_turn"),
        Message("tool", '"25 C"'),
    ]
    prompt = render_dialog(dialog, ToolSpec(tools=(WEATHER,), tool_format="pythonic"), today=TODAY)
    start = "<|start_header_id|>user<|end_header_id|>"
    assert prompt[prompt.index(start) :] == expected[expected.index(start) :]


@pytest.mark.parametrize(
    "arguments",
    [
        {"a": 1, "b": "x"},
        {"flag": True, "none": None, "ratio": 0.25, "big": 12345678901234567890},
        {"items": [1, "two", [3.5, False]], "unicode": "Zoë 🎉 東京"},
        {"look_alike": "<|eot_id|><|python_tag|>", "empty": ""},
        {},
    ],
)
def test_calls_round_trip_through_the_parser(arguments: dict[str, object]) -> None:
    """What Meta writes back for a call is what the parser reads back (values Meta can write as Python)."""
    first, second = ToolCall("first", arguments), ToolCall("second_tool", {"n": 2})
    for calls in ((first,), (first, second)):
        text = "".join(encode_pythonic_call(call) for call in calls)
        assert text.startswith(f"[{first.name}(")
        joined = "[" + ", ".join(encode_pythonic_call(call)[1:-1] for call in calls) + "]"
        parsed = parse_completion(joined, tools=["first", "second_tool"])
        assert parsed.error is None
        assert parsed.tool_calls == calls
        single = parse_completion(encode_pythonic_call(first), tools=["first"])
        assert single.tool_calls == (first,)


def test_model_output_in_this_format_parses_to_several_calls() -> None:
    text = '[get_weather(city="San Francisco", metric="celsius"), get_weather(city="Seattle")]<|eot_id|>'
    completion = completion_from_text(text, trusted=True)
    parsed = completion.parse(tools=["get_weather"])
    assert parsed.stop_reason == "end_of_turn"
    assert [c.arguments for c in parsed.tool_calls] == [
        {"city": "San Francisco", "metric": "celsius"},
        {"city": "Seattle"},
    ]
    tagged = completion_from_text("<|python_tag|>" + text, trusted=True).parse(tools=["get_weather"])
    assert tagged.tool_calls == parsed.tool_calls


def test_several_calls_in_history_render_as_meta_writes_them() -> None:
    calls = (ToolCall("get_weather", {"city": "Paris"}), ToolCall("get_weather", {"city": "Oslo", "days": 2}))
    dialog = [Message("user", "Both?"), Message("assistant", "", calls), Message("tool", "12"), Message("tool", "3")]
    prompt = render_dialog(dialog, ToolSpec(tools=(WEATHER,), tool_format="pythonic"), today=TODAY)
    assert '[get_weather(city="Paris")][get_weather(city="Oslo", days=2)]<|eot_id|>' in prompt
    assert prompt.count("<|start_header_id|>ipython<|end_header_id|>") == 2


def test_hf_dialect_is_refused() -> None:
    with pytest.raises(PromptFormatError, match="pythonic is Meta's rendering only"):
        render_dialog([Message("user", "x")], ToolSpec(tool_format="pythonic"), today=TODAY, dialect="hf")

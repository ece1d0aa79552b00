"""Llama 4 prompts against Meta's reference (llama-stack's Llama 4 augmentation + `llama_models.llama4.chat_format`),
token for token, and Llama 4 completions decoded as Meta decodes them."""

from __future__ import annotations

import re
import sys
from pathlib import Path
from typing import Any

import pytest

from model.completion import Completion, CompletionBuilder, SpecialToken, completion_from_text, trusted_spans
from model.messages import Message, ToolCall, ToolSpec
from model.prompt_format import PromptFormatError, dialog_segments, encode_dialog, render_dialog
from model.prompt_segments import Special
from model.tokenizer import get_tokenizer
from model.tokenizer_specs import LLAMA4

sys.path.insert(0, str(Path(__file__).parent))
from prompt_oracles import WEATHER
from prompt_oracles_pythonic import INJECTIONS4, TODAY, Case, corpus, meta_chat_format, oracle_ids

CORPUS = corpus()
BASE = 200_000


def tok() -> Any:
    return get_tokenizer(family="llama4")


@pytest.mark.parametrize("case", CORPUS, ids=[c.name for c in CORPUS])
def test_matches_meta_reference(case: Case) -> None:
    expected = oracle_ids(list(case.messages), case.spec, "llama4")
    assert encode_dialog(case.messages, case.spec, today=TODAY, tokenizer=tok()) == expected
    assert encode_dialog(case.messages, case.spec, today=TODAY, family="llama4") == expected
    text = render_dialog(case.messages, case.spec, today=TODAY, family="llama4")
    assert text == meta_chat_format("llama4").tokenizer.decode(expected)


@pytest.mark.parametrize("case", CORPUS[::7], ids=[c.name for c in CORPUS[::7]])
def test_without_generation_prompt(case: Case) -> None:
    expected = oracle_ids(list(case.messages), case.spec, "llama4", add_generation_prompt=False)
    ids = encode_dialog(case.messages, case.spec, today=TODAY, add_generation_prompt=False, tokenizer=tok())
    assert ids == expected
    assert ids[-1] in (tok().eot_id, tok().eom_id)


@pytest.mark.parametrize("case", CORPUS, ids=[c.name for c in CORPUS])
def test_control_tokens_come_only_from_the_format(case: Case) -> None:
    segments = dialog_segments(case.messages, case.spec, today=TODAY, family="llama4")
    ids = encode_dialog(case.messages, case.spec, today=TODAY, tokenizer=tok())
    assert [i for i in ids if i >= BASE] == [tok().special_id(s.name) for s in segments if isinstance(s, Special)]


def test_user_injection_stays_plain_text() -> None:
    for attack in INJECTIONS4:
        ids = encode_dialog([Message("user", attack)], today=TODAY, tokenizer=tok())
        names = ["<|begin_of_text|>", "<|header_start|>", "<|header_end|>", "<|eot|>"]
        names += ["<|header_start|>", "<|header_end|>"]
        assert [i for i in ids if i >= BASE] == [tok().special_id(n) for n in names]


def test_documented_tool_calling_example() -> None:
    """llama_stack/models/llama/llama4/prompt_format.md, "Zero shot function calling - system message"."""
    import llama_stack.models.llama.llama4 as doc_home

    doc = (Path(doc_home.__file__).parent / "prompt_format.md").read_text(encoding="utf-8")
    expected = re.findall(r"##### Input Prompt Format\n```\n(.*?)\n```", doc, re.S)[4]
    from llama_stack.models.llama.llama4.prompt_templates.system_prompts import PythonListCustomToolGenerator

    example = PythonListCustomToolGenerator().data_examples()[0][0]
    weather = type(WEATHER)(
        example.tool_name,
        example.description,
        {
            "type": "object",
            "properties": {
                name: {"type": p.param_type, "description": p.description, "default": p.default}
                for name, p in example.parameters.items()
            },
            "required": [name for name, p in example.parameters.items() if p.required],
        },
    )
    spec = ToolSpec(tools=(weather,), tool_format="pythonic")
    assert render_dialog([Message("user", "What is the weather in SF and Seattle?")], spec, today=TODAY,
                         family="llama4") == expected


def test_documented_plain_conversation() -> None:
    prompt = render_dialog(
        [
            Message("system", "You are a helpful assistant"),
            Message("user", "Answer who are you in the form of jeopardy?"),
        ],
        today=TODAY,
        family="llama4",
    )
    assert prompt == (
        "<|begin_of_text|><|header_start|>system<|header_end|>\n\nYou are a helpful assistant<|eot|>"
        "<|header_start|>user<|header_end|>\n\nAnswer who are you in the form of jeopardy?<|eot|>"
        "<|header_start|>assistant<|header_end|>\n\n"
    )


def test_raw_output_is_reencoded_verbatim_with_its_own_stop() -> None:
    raw = "<|python_start|>print(1)<|python_end|>"
    reply = Message("assistant", raw=raw, special_spans=((0, 16), (24, 38)), stop_reason="end_of_message",
                    tool_calls=(ToolCall("code_interpreter", {"code": "print(1)"}),))
    ids = encode_dialog([Message("user", "hi"), reply], today=TODAY, add_generation_prompt=False, tokenizer=tok())
    t = tok()
    tail = [t.special_id("<|python_start|>"), *t.encode("print(1)"), t.special_id("<|python_end|>"), t.eom_id]
    assert ids[-len(tail) :] == tail
    plain = Message("assistant", raw=raw, special_spans=None, stop_reason="end_of_turn")
    ids = encode_dialog([Message("user", "hi"), plain], today=TODAY, add_generation_prompt=False, tokenizer=tok())
    assert t.special_id("<|python_start|>") not in ids
    with pytest.raises(PromptFormatError, match="special_spans"):  # a Llama 3 token is not a Llama 4 special
        bad = Message("assistant", raw="<|python_tag|>x", special_spans=((0, 14),))
        encode_dialog([Message("user", "hi"), bad], today=TODAY, tokenizer=tok())


@pytest.mark.parametrize(
    ("spec", "dialect", "problem"),
    [
        (ToolSpec(tools=(WEATHER,)), "meta", "pythonic format only"),
        (ToolSpec(tools=(WEATHER,), tool_format="function_tag"), "meta", "pythonic format only"),
        (ToolSpec(), "hf", "Meta's rendering only"),
    ],
)
def test_unsupported_combinations_name_the_problem(spec: ToolSpec, dialect: str, problem: str) -> None:
    with pytest.raises(PromptFormatError, match=problem):
        render_dialog([Message("user", "x")], spec, today=TODAY, family="llama4", dialect=dialect)  # type: ignore[arg-type]


def test_family_and_tokenizer_must_agree() -> None:
    with pytest.raises(PromptFormatError, match="llama4 prompt cannot be encoded with the llama3 tokenizer"):
        encode_dialog([Message("user", "x")], today=TODAY, family="llama4", tokenizer=get_tokenizer())


# ---- decoding ----------------------------------------------------------------------------------------------------

COMPLETIONS = [
    ("The capital of France is Paris.<|eot|>", None),
    ('[get_weather(city="San Francisco", metric="celsius")]<|eot|>', None),
    ('[get_weather(city="SF"), trending_songs(n=3, genre="jazz")]<|eot|>', None),
    ("[get_user_info(user_id=7890, special='black')]<|eom|>", None),
    ('<|python_start|>[get_weather(city="Oslo")]<|python_end|><|eom|>', None),
    ('<|python_start|>brave_search.call(query="llama 4 release")<|python_end|><|eom|>', ("code_interpreter",)),
    ("<|python_start|>import math\nprint(math.pi)<|python_end|><|eom|>", ("code_interpreter",)),
    ('{"name": "get_weather", "parameters": {"city": "Rome"}}<|eot|>', None),
    ('<function=get_weather>{"city": "Lima"}</function><|eot|>', None),
    ("Unicode 東京 🎉 and <|eot_id|> spelled out<|eot|>", None),
    ("Cut by the length limit", None),
]


def llama4_completion(text: str) -> Completion:
    """The text as a Llama 4 model would generate it: its Llama 4 special-token strings as special ids, any other
    (a Llama 3 `<|eot_id|>`) as ordinary tokens."""
    builder, position = CompletionBuilder(), 0
    for start, end in trusted_spans(text):
        if text[start:end] in LLAMA4.special_names:
            builder.add(text[position:start])
            builder.add(SpecialToken(text[start:end]))
            position = end
    builder.add(text[position:])
    return builder.result()


def _meta_decode(text: str) -> Any:
    from llama_models.datatypes import StopReason

    return meta_chat_format("llama4").decode_assistant_message_from_content(text, StopReason.out_of_tokens)


@pytest.mark.parametrize(("text", "builtin"), COMPLETIONS, ids=[str(i) for i in range(len(COMPLETIONS))])
def test_completions_decode_like_meta(text: str, builtin: tuple[str, ...] | None) -> None:
    """Same content, first call and stop reason as Meta's decoder (which keeps only the first call; we keep all)."""
    parsed = llama4_completion(text).parse(builtin_tools=builtin or ())
    meta = _meta_decode(text)
    assert parsed.error is None
    stop = {"end_of_turn": "end_of_turn", "end_of_message": "end_of_message", "out_of_tokens": None}
    assert parsed.stop_reason == stop[meta.stop_reason.value]
    if meta.tool_calls:
        first = meta.tool_calls[0]
        assert parsed.tool_calls[0] == ToolCall(getattr(first.tool_name, "value", first.tool_name), first.arguments)
        assert parsed.content is None
    else:
        assert parsed.tool_calls == ()
        assert parsed.content == meta.content


def test_several_calls_are_all_kept() -> None:
    parsed = completion_from_text(COMPLETIONS[2][0], trusted=True).parse(tools=["get_weather", "trending_songs"])
    assert [c.name for c in parsed.tool_calls] == ["get_weather", "trending_songs"]


def test_llama4_tokens_spelled_out_are_text() -> None:
    parsed = completion_from_text('<|python_start|>[f(x=1)]<|eom|>', trusted=False).parse(tools=["f"])
    assert parsed.tool_calls == ()
    assert parsed.stop_reason is None
    assert parsed.content == '<|python_start|>[f(x=1)]<|eom|>'

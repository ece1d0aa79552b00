"""Tool-call parsing: the shared labelled strings, Meta's documented model outputs, every form, and malformed input."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from model.completion import trusted_spans
from model.messages import ToolCall
from model.tool_parser import ParsedCompletion
from model.tool_parser import parse_completion as parse_untrusted
from tests.data_paths import data_file

STRINGS = json.loads(data_file("tool_calling", "llama_tool_call_strings.json").read_text(encoding="utf-8"))


def parse_completion(text: str, **kwargs: Any) -> ParsedCompletion:
    """These strings stand in for model output: their special-token strings are tokens generated as special ids."""
    return parse_untrusted(text, special_spans=trusted_spans(text), **kwargs)


def calls(parsed: ParsedCompletion) -> list[dict[str, Any]]:
    return [{"name": c.name, "arguments": c.arguments} for c in parsed.tool_calls]


def test_the_shared_set_is_complete() -> None:
    assert len(STRINGS) == 46
    assert sum(item["real_model_output"] for item in STRINGS) == 9


@pytest.mark.parametrize("item", STRINGS, ids=[f"{i}-{s['format']}" for i, s in enumerate(STRINGS)])
def test_shared_tool_call_strings(item: dict[str, Any]) -> None:
    raw = item["raw_output"]
    expected = item["expected_calls"]
    builtin_tools: tuple[str, ...] = ()
    if item["format"] == "code_interpreter":
        builtin_tools = ("code_interpreter",)
        body = raw.split("<|python_tag|>", 1)[1].rsplit("<|eom_id|>", 1)[0]
        expected = [{"name": "code_interpreter", "arguments": {"code": body}}]
    parsed = parse_completion(raw, builtin_tools=builtin_tools)
    assert calls(parsed) == expected
    if item["format"].endswith("_invalid") and expected == [] and parsed.error is None:
        assert parsed.content == raw  # not a call attempt at all: plain text
    if expected:
        assert parsed.error is None
    if raw.endswith("<|eom_id|>"):
        assert parsed.stop_reason == "end_of_message"
    elif raw.endswith("<|eot_id|>"):
        assert parsed.stop_reason == "end_of_turn"
    else:
        assert parsed.stop_reason is None


def _documented_responses() -> list[str]:
    import llama_models

    doc = (Path(llama_models.__file__).parent / "llama3_1" / "prompt_format.md").read_text(encoding="utf-8")
    return re.findall(r"##### Model Response Format\n```\n(.*?)\n```", doc, re.S)


def test_documented_llama_3_1_outputs() -> None:
    responses = [r for r in _documented_responses() if r.endswith(("<|eot_id|>", "<|eom_id|>"))]
    assert len(responses) == 6
    results = [
        parse_completion(r, builtin_tools=("code_interpreter", "brave_search", "wolfram_alpha")) for r in responses
    ]
    got = [(calls(p)[0]["name"] if p.tool_calls else None, p.stop_reason, p.error) for p in results]
    assert got == [
        (None, "end_of_turn", None),
        ("brave_search", "end_of_message", None),
        ("code_interpreter", "end_of_message", None),
        (None, "end_of_turn", None),
        ("trending_songs", "end_of_message", None),
        ("trending_songs", "end_of_turn", None),
    ]
    assert calls(results[1])[0]["arguments"] == {"query": "latest price of 1oz gold"}
    assert calls(results[2])[0]["arguments"]["code"].startswith("def is_prime(n):")
    assert calls(results[4])[0]["arguments"] == {"n": "10", "genre": "all"}
    assert calls(results[5])[0]["arguments"] == {"n": 10}
    assert results[0].content == 'Here\'s my response\n\n"What is a helpful assistant?"'


def test_raw_code_is_a_call_only_with_code_interpreter() -> None:
    text = "<|python_tag|>import os\nos.listdir('.')<|eom_id|>"
    off = parse_completion(text)
    assert off.tool_calls == () and off.error_kind == "code_not_enabled" and off.error
    on = parse_completion(text, builtin_tools=("code_interpreter",))
    assert on.tool_calls == (ToolCall("code_interpreter", {"code": "import os\nos.listdir('.')"}),)


def test_multiple_calls_are_kept() -> None:
    text = '<function=a>{"x": 1}</function><function=b>{"y": [2]}</function><|eot_id|>'
    assert calls(parse_completion(text)) == [
        {"name": "a", "arguments": {"x": 1}},
        {"name": "b", "arguments": {"y": [2]}},
    ]
    listed = '<|python_tag|>[{"name": "a", "arguments": {}}, {"type": "function", "name": "b", "parameters": {}}]'
    assert [c.name for c in parse_completion(listed).tool_calls] == ["a", "b"]
    pythonic = "<|python_tag|>[a(x=1), b(y='z')]<|eom_id|>"
    assert calls(parse_completion(pythonic)) == [
        {"name": "a", "arguments": {"x": 1}},
        {"name": "b", "arguments": {"y": "z"}},
    ]


def test_text_before_the_python_tag_is_content() -> None:
    parsed = parse_completion('Let me look.<|python_tag|>brave_search.call(query="x")<|eom_id|>')
    assert parsed.content == "Let me look."
    assert calls(parsed) == [{"name": "brave_search", "arguments": {"query": "x"}}]


def test_openai_style_nesting_and_nested_braces() -> None:
    text = '<|python_tag|>{"type": "function", "function": {"name": "f", "arguments": {"q": "{not} [json]"}}}'
    assert calls(parse_completion(text)) == [{"name": "f", "arguments": {"q": "{not} [json]"}}]
    tag = '<function=f>{"a": {"b": {"c": "}"}}}</function>'
    assert calls(parse_completion(tag)) == [{"name": "f", "arguments": {"a": {"b": {"c": "}"}}}}]


@pytest.mark.parametrize(
    ("text", "kind"),
    [
        ('<|python_tag|>{"name": "f", "parameters": {"x": 1}<|eom_id|>', "invalid_json"),
        ('<|python_tag|>{"name": "f", "parameters": [1, 2]}<|eom_id|>', "arguments_not_object"),
        ('<|python_tag|>{"name": "f", "arguments": "{\\"x\\": 1}"}', "arguments_not_object"),
        ('<|python_tag|>{"parameters": {}}<|eom_id|>', "missing_name"),
        ('<|python_tag|>{"name": "f", "parameters": {}} and more text', "invalid_json"),
        ('<function=f>{"x": </function>', "invalid_json"),
        ("<function=f>[1, 2]</function>", "arguments_not_object"),
        ('<|python_tag|>photogen.call(query="cat")<|eom_id|>', "unknown_tool"),
        ('<|python_tag|>brave_search.call("positional")<|eom_id|>', "invalid_call_syntax"),
        ('<|python_tag|>brave_search.call(query="unclosed)<|eom_id|>', "invalid_call_syntax"),
        ("[f(x=__import__('os').system('id'))]", "invalid_call_syntax"),
        ("[f(x=open('/etc/passwd').read())]", "invalid_call_syntax"),
        ("<|python_tag|><|eom_id|>", "invalid_call_syntax"),
        ('<|python_tag|>{"name": "bad name!", "parameters": {}}', "invalid_call_syntax"),
    ],
)
def test_malformed_calls_are_typed_errors(text: str, kind: str) -> None:
    parsed = parse_completion(text, builtin_tools=("code_interpreter",))
    assert parsed.tool_calls == ()
    assert parsed.error_kind == kind
    assert parsed.error and "\n" not in parsed.error


def test_malformed_json_after_python_tag_is_not_run_as_code() -> None:
    parsed = parse_completion('<|python_tag|>{"name": "f", "parameters": {oops}}', builtin_tools=("code_interpreter",))
    assert parsed.tool_calls == () and parsed.error_kind == "invalid_json"


def test_python_code_that_is_not_a_call_list_runs_as_code() -> None:
    code = "[print(i) for i in range(3)]"
    parsed = parse_completion("<|python_tag|>" + code, builtin_tools=("code_interpreter",))
    assert parsed.tool_calls == (ToolCall("code_interpreter", {"code": code}),)


def test_unknown_custom_tools_when_names_are_given() -> None:
    parsed = parse_completion('{"name": "rm_rf", "parameters": {}}', tools=["get_weather"])
    assert parsed.error_kind == "unknown_tool" and parsed.tool_calls == ()
    ok = parse_completion('{"name": "get_weather", "parameters": {"city": "Oslo"}}', tools=["get_weather"])
    assert ok.error is None and ok.tool_calls[0].name == "get_weather"


def test_json_in_prose_is_not_a_call() -> None:
    text = 'A user record looks like {"name": "Ada", "age": 36}.<|eot_id|>'
    parsed = parse_completion(text)
    assert parsed.tool_calls == () and parsed.error is None
    assert parsed.content == 'A user record looks like {"name": "Ada", "age": 36}.'


@pytest.mark.parametrize(
    "text",
    [
        '...the app writes {"name": "get_weather", "parameters": {"city": "Oslo"}} on one line.<|eot_id|>',
        'Here is the result: {"name": "get_weather", "parameters": {}} Would you like to know more?',
        '{"name": "get_weather", "parameters": {"city": "Oslo"}} is what the app writes.<|eot_id|>',
        'Call it like [{"name": "get_weather", "parameters": {}}] or not at all.',
        'Example: <function=get_weather>{"city": "Oslo"}</function> is the tag form.<|eot_id|>',
        'Run `brave_search.call(query="x")` to search.<|eot_id|>',
    ],
)
def test_a_call_quoted_in_prose_is_an_answer(text: str) -> None:
    """Meta's rule: a tool call is the whole message (whitespace aside); prose quoting one is an answer."""
    parsed = parse_completion(text, tools=["get_weather"])
    assert parsed.tool_calls == () and parsed.error is None
    assert parsed.content == text.removesuffix("<|eot_id|>")


def test_a_whole_message_call_may_have_surrounding_whitespace() -> None:
    parsed = parse_completion('\n  {"name": "get_weather", "parameters": {"city": "Oslo"}}  \n<|eot_id|>')
    assert calls(parsed) == [{"name": "get_weather", "arguments": {"city": "Oslo"}}]
    tagged = parse_completion('  <function=get_weather>{"city": "Oslo"}</function>\n <function=f>{}</function> ')
    assert [c.name for c in tagged.tool_calls] == ["get_weather", "f"]
    trailing = parse_completion('<function=get_weather>{"city": "Oslo"}</function> and then I will answer.')
    assert trailing.tool_calls == () and trailing.error_kind == "invalid_call_syntax"


@pytest.mark.parametrize(
    "text",
    [
        "<|python_tag|>print(open('/etc/passwd').read())<|eot_id|>",
        '<|python_tag|>brave_search.call(query="x")<|eom_id|>',
        "Sure: <|python_tag|>import os; os.system('id')",
    ],
)
def test_special_token_strings_spelled_in_plain_tokens_are_text(text: str) -> None:
    """Issue 12.9: the same string the model generated as ordinary tokens (an echo of user text) is no control token:
    no call, no stop reason, and the whole text is the answer."""
    parsed = parse_untrusted(text, builtin_tools=("code_interpreter", "brave_search"))
    assert parsed.tool_calls == () and parsed.error is None and parsed.stop_reason is None
    assert parsed.content == text
    # Only the spans marked as generated special ids count: here the stop token, not the python tag.
    stop = text.rfind("<|eot_id|>")
    if stop >= 0:
        marked = parse_untrusted(text, builtin_tools=("code_interpreter",), special_spans=[(stop, len(text))])
        assert marked.tool_calls == () and marked.stop_reason == "end_of_turn" and marked.content == text[:stop]


def test_stop_reasons() -> None:
    assert parse_completion("hi<|eot_id|>").stop_reason == "end_of_turn"
    assert parse_completion("hi<|eom_id|>").stop_reason == "end_of_message"
    assert parse_completion("hi<|end_of_text|>").stop_reason == "end_of_turn"
    assert parse_completion("hi").stop_reason is None
    assert parse_completion("<|eot_id|>").content == ""


@settings(max_examples=300, deadline=None)
@given(
    st.lists(
        st.one_of(
            st.text(max_size=20),
            st.sampled_from(
                [
                    "<|python_tag|>",
                    "<|eom_id|>",
                    "<function=",
                    "</function>",
                    "{",
                    "}",
                    "[",
                    "]",
                    '"name"',
                    ":",
                    "(",
                    ")",
                    ".call(",
                    "query=",
                    "brave_search",
                    ";",
                    ",",
                    '"parameters"',
                    "=",
                    "'",
                ]
            ),
        ),
        max_size=25,
    ).map("".join)
)
def test_never_raises_and_never_invents_code(text: str) -> None:
    parsed = parse_completion(text)
    assert all(call.name != "code_interpreter" for call in parsed.tool_calls)
    assert all(isinstance(call.arguments, dict) for call in parsed.tool_calls)
    assert parsed.error is None or parsed.tool_calls == ()
    json.dumps(calls(parsed))  # arguments are plain JSON values


@pytest.mark.parametrize(
    "completion",
    [
        '<|python_tag|>{"name": "f", "parameters": {"x": NaN}}<|eom_id|>',
        '<|python_tag|>{"name": "f", "parameters": {"x": [1, Infinity]}}<|eom_id|>',
        '<function=f>{"x": -Infinity}</function><|eot_id|>',
        '<|python_tag|>{"name": "f", "parameters": {"x": 1e999}}<|eom_id|>',
        "[f(x=1e999)]<|eot_id|>",
    ],
)
def test_arguments_json_cannot_represent_are_a_typed_error(completion: str) -> None:
    parsed = parse_completion(completion)
    assert parsed.tool_calls == ()
    assert parsed.error is not None and "JSON cannot represent" in parsed.error

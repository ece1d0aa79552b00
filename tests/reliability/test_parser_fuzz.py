"""Fuzzing the parsers that read untrusted data: only typed errors, no crash, no hang (hard per-example deadline).

- the tool-call parser (model output, which an injected tool result can steer);
- tool argument validation (custom tools' pydantic models, the policy's argument patterns and JSON schemas);
- scripted-model files;
- the policy loader: tests/guards/test_policy_fuzz.py fuzzes the schema; here, what it did not reach - mutated real
  policies, bytes that are not UTF-8, and YAML whose aliases or nesting would make a loader recurse or hang.
"""

from __future__ import annotations

import asyncio
import json
import string
from pathlib import Path
from typing import Any, Literal

import pytest
from hypothesis import strategies as st
from pydantic import BaseModel

from model.completion import trusted_spans
from model.tool_parser import ParsedCompletion, parse_completion
from tests.reliability.helpers import REPO, fuzz, hard_deadline, hostile_text

KINDS = {"invalid_json", "invalid_call_syntax", "missing_name", "arguments_not_object", "unknown_tool",
         "code_not_enabled", "code_not_tagged", None}
TOOLS = ["fetch_page", "send_email"]
BUILTINS = ["brave_search", "wolfram_alpha", "code_interpreter"]

# --- the tool-call parser ----------------------------------------------------------------------------------------

_json_value = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False), st.text(max_size=8)),
    lambda inner: st.one_of(st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=5), inner, max_size=3)),
    max_leaves=8,
)
_name = st.one_of(st.sampled_from([*TOOLS, *BUILTINS, "", "x y", "rm -rf", "a" * 200, "evil\n"]), st.text(max_size=8))


@st.composite
def _call_text(draw: st.DrawFn) -> str:
    """One call in any of the forms the parser knows, possibly truncated or corrupted."""
    name, args = draw(_name), draw(st.dictionaries(st.text(max_size=6), _json_value, max_size=3))
    form = draw(st.sampled_from(["json", "json_args", "list", "tag", "pythonic", "builtin", "code"]))
    if form == "json":
        text = json.dumps({"type": "function", "name": name, "parameters": args})
    elif form == "json_args":
        text = json.dumps({"name": name, "arguments": draw(_json_value)})
    elif form == "list":
        text = json.dumps([{"name": name, "parameters": args}, {"name": draw(_name), "parameters": {}}])
    elif form == "tag":
        text = f"<function={name}>{json.dumps(args)}</function>"
    elif form == "pythonic":
        text = "[" + ", ".join(f"{n}({k}={v!r})" for n, (k, v) in zip([name, *TOOLS], args.items(), strict=False)) + "]"
    elif form == "builtin":
        text = f'{draw(st.sampled_from(BUILTINS))}.call(query="{draw(st.text(max_size=10))}")'
    else:
        text = draw(st.sampled_from(["print(1)", "import os\nos.system('x')", "def f(:", "[" * 50, "1" * 5000]))
    if draw(st.booleans()):
        cut = draw(st.integers(0, len(text)))
        text = text[:cut] + draw(st.sampled_from(["", "}", "]", ")", "\\", '"', "\x00", "<|eot_id|>"]))
    return text


@st.composite
def completions(draw: st.DrawFn) -> str:
    parts = draw(st.lists(st.one_of(
        _call_text(), hostile_text(4),
        st.sampled_from(["<|python_tag|>", "<|eom_id|>", "<|eot_id|>", "<|end_of_text|>", ";", " ", "\n"]),
    ), max_size=6))
    return "".join(parts)


def _check_parsed(parsed: ParsedCompletion, known: set[str] | None) -> None:
    assert isinstance(parsed, ParsedCompletion)
    assert parsed.error_kind in KINDS
    assert (parsed.error is None) == (parsed.error_kind is None)
    if parsed.error is not None:
        assert parsed.tool_calls == (), "a malformed completion must not yield any call (nothing half-parsed runs)"
    for call in parsed.tool_calls:
        assert isinstance(call.name, str) and call.name
        assert isinstance(call.arguments, dict) and all(isinstance(k, str) for k in call.arguments)
        json.dumps(call.arguments)  # the guards and the audit log read the arguments as JSON
        if known is not None:
            assert call.name in known
    assert parsed.stop_reason in (None, "end_of_turn", "end_of_message")


def check_tool_parser_only_returns_typed_results(text: str, builtins: tuple[str, ...], restrict: bool) -> None:
    tools = TOOLS if restrict else None
    known = {*TOOLS, *builtins, "brave_search", "wolfram_alpha"} if restrict else None
    with hard_deadline(5):
        parsed = parse_completion(text, builtin_tools=builtins, tools=tools)
        # As model output whose special-token strings were generated as ids (python tags and stops are real).
        marked = parse_completion(text, builtin_tools=builtins, tools=tools, special_spans=trusted_spans(text))
    _check_parsed(parsed, known)
    _check_parsed(marked, known)
    assert not any(call.name == "code_interpreter" for call in parsed.tool_calls)  # code needs a real python tag


test_tool_parser_only_returns_typed_results, test_tool_parser_only_returns_typed_results_long = fuzz(
    400, completions(), st.sampled_from([(), ("code_interpreter",), tuple(BUILTINS)]), st.booleans()
)(check_tool_parser_only_returns_typed_results)


def check_tool_parser_on_arbitrary_bytes(text: str) -> None:
    with hard_deadline(5):
        _check_parsed(parse_completion(text, builtin_tools=BUILTINS, tools=TOOLS), None)


test_tool_parser_on_arbitrary_bytes, test_tool_parser_on_arbitrary_bytes_long = fuzz(
    150, st.binary(max_size=300).map(lambda b: b.decode("utf-8", "replace"))
)(check_tool_parser_on_arbitrary_bytes)


HUGE = 200_000
PATHOLOGICAL = {
    "open_brackets": "[" * HUGE,
    "open_braces": "{" * HUGE,
    "tagged_open_brackets": "<|python_tag|>" + "[" * HUGE,
    "tagged_open_braces": "<|python_tag|>" + "{" * HUGE,
    "calls_then_garbage": '{"name": "f", "parameters": {}}' * 5000 + "{",
    "many_function_tags": "<function=fetch_page>{}" * 20_000,
    "many_python_tags": "<|python_tag|>" * 20_000,
    "pythonic_deep": "[f(a=" + "[" * 20_000 + ")]",
    "huge_integer_json": '<|python_tag|>{"name": "f", "parameters": {"a": ' + "9" * 5000 + "}}",
    "huge_integer_free_text": 'see {"name": "f", "parameters": {"a": ' + "9" * 5000 + "}}",
    "huge_integer_tag": '<function=f>{"a": ' + "9" * 5000 + "}</function>",
    "huge_integer_pythonic": "[f(a=" + "9" * 5000 + ")]",
    "long_string_argument": '<|python_tag|>{"name": "f", "parameters": {"a": "' + "x" * 1_000_000 + '"}}',
    "nested_json_arguments": '<|python_tag|>{"name": "f", "parameters": ' + '{"a":' * 5000 + "1" + "}" * 5001,
    "unicode_name": '<|python_tag|>{"name": "f\u202e", "parameters": {}}',
    "quote_soup": '"' * HUGE,
}


@pytest.mark.parametrize("name", sorted(PATHOLOGICAL))
def test_tool_parser_pathological_inputs_end_fast(name: str) -> None:
    """Inputs built to hit recursion limits, quadratic scans or Python's int-string limit: typed result, quickly."""
    text = PATHOLOGICAL[name]
    with hard_deadline(10):
        parsed = parse_completion(text, builtin_tools=BUILTINS, tools=[*TOOLS, "f"], special_spans=trusted_spans(text))
    _check_parsed(parsed, None)


# --- tool argument validation ----------------------------------------------------------------------------------


class Address(BaseModel):
    street: str
    number: int


def _tools() -> list[Any]:
    from tools.code_interpreter import CodeInterpreter
    from tools.custom import tool

    @tool
    def typed(
        name: str,
        count: int = 1,
        ratio: float = 0.5,
        tags: list[str] | None = None,
        mode: Literal["a", "b"] = "a",
        meta: dict[str, int] | None = None,
        where: Address | None = None,
    ) -> str:
        """A tool with many argument types."""
        return name

    return [typed, CodeInterpreter()]


_TOOL_OBJECTS: list[Any] = []


def tool_objects() -> list[Any]:
    if not _TOOL_OBJECTS:
        _TOOL_OBJECTS.extend(_tools())
    return _TOOL_OBJECTS


def check_tool_argument_validation_raises_only_its_typed_error(arguments: Any) -> None:
    from tools.base import ToolArgumentError

    for item in tool_objects():
        with hard_deadline(5):
            try:
                checked = item.validate(arguments)
            except ToolArgumentError as exc:
                assert str(exc)
            else:
                assert set(checked) <= set(item.args_model.model_fields)


(
    test_tool_argument_validation_raises_only_its_typed_error,
    test_tool_argument_validation_raises_only_its_typed_error_long,
) = fuzz(
    300,
    st.one_of(
        _json_value,
        st.dictionaries(
            st.sampled_from(["name", "count", "ratio", "tags", "mode", "meta", "where", "code", "x"]),
            _json_value,
            max_size=5,
        ),
    ),
)(check_tool_argument_validation_raises_only_its_typed_error)


def check_policy_argument_rules_decide_every_value(value: Any, pattern: str, schema: dict) -> None:
    from guards.policy import parse_policy_text
    from model.messages import ToolCall
    from tools.rules import TurnState, check_call

    policy = parse_policy_text(
        "version: 1\ntools:\n  arguments:\n    t:\n"
        f"      p: {{pattern: {json.dumps(pattern)}}}\n      s: {{schema: {json.dumps(schema)}}}\n"
    )
    for args in ({"p": value}, {"s": value}, {"p": value, "s": value}):
        with hard_deadline(5):
            decision = check_call(ToolCall("t", args), policy.tools, TurnState(), side_effects=False)
        assert decision.action in ("allow", "deny")
        if decision.action == "deny":
            assert decision.rule == "arguments" and decision.reason


test_policy_argument_rules_decide_every_value, test_policy_argument_rules_decide_every_value_long = fuzz(
    300,
    _json_value,
    st.sampled_from([r"[a-z]+", r"\d{1,3}", r"(a|aa)+$", r"[^;|&`$]*"]),
    st.sampled_from(
        [
            {"type": "string", "maxLength": 5},
            {"type": "array", "items": {"type": "integer"}},
            {"type": "object", "properties": {"a": {"$ref": "#"}}},
            {"enum": [1, "a", None]},
        ]
    ),
)(check_policy_argument_rules_decide_every_value)


def test_long_argument_against_a_pattern_is_bounded() -> None:
    """A model-written argument of a million characters is checked against the policy's pattern in bounded time
    (the pattern is the deployer's; catastrophic patterns are theirs to avoid)."""
    from guards.policy import parse_policy_text
    from model.messages import ToolCall
    from tools.rules import TurnState, check_call

    policy = parse_policy_text("version: 1\ntools:\n  arguments:\n    t:\n      p: {pattern: '[a-z]+'}\n")
    with hard_deadline(5):
        decision = check_call(ToolCall("t", {"p": "a" * 1_000_000 + ";"}), policy.tools, TurnState())
    assert decision.action == "deny"


# --- scripted-model files --------------------------------------------------------------------------------------


def _script_lines() -> st.SearchStrategy[str]:
    line = st.one_of(
        st.builds(lambda c: json.dumps({"completion": c}), hostile_text(5)),
        st.builds(json.dumps, _json_value),
        st.sampled_from(
            [
                '{"completion": 1}',
                '{"completion": "x", "extra": 1}',
                "{",
                "[]",
                "null",
                '"x"',
                '{"completion": "\\ud800"}',
                '\ufeff{"completion": "x"}',
                "   ",
                "",
            ]
        ),
        st.text(max_size=20),
    )
    return st.lists(line, max_size=6).map("\n".join)


def check_scripted_model_files_load_or_fail_with_a_located_error(data: bytes) -> None:
    import tempfile

    from model.backends import BackendError, GenerationParams, load_backend

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "model.jsonl"
        path.write_bytes(data)
        with hard_deadline(5):
            try:
                backend = load_backend(f"scripted:{path}")
            except BackendError as exc:
                assert str(path) in str(exc)
                return

            async def drain() -> list[str]:
                out = []
                while backend.remaining:  # type: ignore[attr-defined]
                    out.append("".join([d async for d in backend.stream([1], GenerationParams())]))
                with pytest.raises(BackendError, match="ran out of completions"):
                    [d async for d in backend.stream([1], GenerationParams())]
                return out

            replayed = asyncio.run(drain())
    expected = [json.loads(line)["completion"] for line in data.decode("utf-8").splitlines() if line.strip()]
    assert replayed == expected  # every completion, character for character, in order


(
    test_scripted_model_files_load_or_fail_with_a_located_error,
    test_scripted_model_files_load_or_fail_with_a_located_error_long,
) = fuzz(300, st.one_of(_script_lines().map(lambda s: s.encode("utf-8", "surrogatepass")), st.binary(max_size=200)))(
    check_scripted_model_files_load_or_fail_with_a_located_error
)


# --- the policy loader: what tests/guards/test_policy_fuzz.py does not reach -----------------------------------

EXAMPLE_POLICIES = sorted((REPO / "examples" / "policies").glob("*.yaml"))


def _load_text(text: str) -> None:
    from guards.policy import PolicyError, parse_policy_text

    with hard_deadline(10):
        try:
            parse_policy_text(text, file="fuzz.yaml")
        except PolicyError as exc:
            assert exc.errors and all(str(issue).startswith("fuzz.yaml:") for issue in exc.errors)


def check_mutated_example_policies_load_or_give_located_issues(path: Path, data: st.DataObject) -> None:
    lines = path.read_text(encoding="utf-8").splitlines(keepends=True)
    for _ in range(data.draw(st.integers(1, 4))):
        op = data.draw(st.sampled_from(["delete", "duplicate", "swap", "truncate", "insert", "indent"]))
        i = data.draw(st.integers(0, max(0, len(lines) - 1)))
        if not lines:
            break
        if op == "delete":
            del lines[i]
        elif op == "duplicate":
            lines.insert(i, lines[i])
        elif op == "swap":
            j = data.draw(st.integers(0, len(lines) - 1))
            lines[i], lines[j] = lines[j], lines[i]
        elif op == "truncate":
            lines[i] = lines[i][: data.draw(st.integers(0, len(lines[i])))]
        elif op == "insert":
            lines.insert(
                i,
                data.draw(
                    st.sampled_from(
                        [
                            "  x: 1\n",
                            "- a\n",
                            "&a b: *a\n",
                            "? [1]\n: 2\n",
                            "\t\n",
                            "yes: no\n",
                            "*undefined\n",
                            "!!python/object:os.system x\n",
                        ]
                    )
                ),
            )
        else:
            lines[i] = "  " + lines[i]
    _load_text("".join(lines))


(
    test_mutated_example_policies_load_or_give_located_issues,
    test_mutated_example_policies_load_or_give_located_issues_long,
) = fuzz(150, st.sampled_from(EXAMPLE_POLICIES), st.data())(check_mutated_example_policies_load_or_give_located_issues)


def check_policy_files_that_are_not_text(data: bytes) -> None:
    import tempfile

    from guards.policy import PolicyError, load_policy

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "policy.yaml"
        path.write_bytes(data)
        with hard_deadline(10):
            try:
                load_policy(path)
            except PolicyError as exc:
                assert exc.errors and all(str(issue).startswith(str(path)) for issue in exc.errors)


test_policy_files_that_are_not_text, test_policy_files_that_are_not_text_long = fuzz(100, st.binary(max_size=300))(
    check_policy_files_that_are_not_text
)


def _alias_bomb(levels: int, width: int = 10) -> str:
    lines = ["version: 1", "description: bomb", "refusals:", "  user_input: ok"]
    anchors = ["x0: &a0 [" + ",".join(["1"] * width) + "]"]
    anchors += [f"x{i}: &a{i} [" + ",".join([f"*a{i - 1}"] * width) + "]" for i in range(1, levels)]
    return "\n".join(lines + anchors) + "\n"


def _schema_bomb(levels: int) -> str:
    anchors = ["s0: &s0 {type: string}"]
    for i in range(1, levels):
        props = ", ".join(f"{k}: *s{i - 1}" for k in string.ascii_lowercase[:10])
        anchors.append(f"s{i}: &s{i} {{type: object, properties: {{{props}}}}}")
    return "\n".join(
        ["version: 1", *anchors, "tools:", "  arguments:", "    t:", f"      a: {{schema: *s{levels - 1}}}"]
    )


YAML_TRAPS = {
    "recursive_alias": "version: 1\nx: &a [*a]\n",
    "recursive_alias_in_a_known_key": "version: 1\nrefusals: &a {user_input: *a}\n",
    "deep_flow_nesting": "version: 1\nx: " + "[" * 5000 + "]" * 5000 + "\n",
    "deep_block_nesting": "version: 1\n" + "".join(" " * i + f"k{i}:\n" for i in range(300)) + " " * 300 + "v: 1\n",
    "alias_chain_depth": "version: 1\n"
    + "".join(f"a{i}: &a{i} " + "[" * 30 + (f"*a{i - 1}" if i else "1") + "]" * 30 + "\n" for i in range(40)),
    "billion_laughs_list": _alias_bomb(9),
    "billion_laughs_schema": _schema_bomb(7),
    "python_tag": "version: 1\nx: !!python/object/apply:os.system ['true']\n",
    "many_keys": "version: 1\n" + "".join(f"k{i}: {i}\n" for i in range(20_000)),
}


@pytest.mark.parametrize("name", sorted(YAML_TRAPS))
def test_yaml_traps_give_a_policy_error_quickly(name: str) -> None:
    """Found here: recursive aliases and deep nesting crashed the loader with RecursionError, and alias bombs took
    exponential time (7 levels: 7 s; 9: ~12 min). The loader now refuses them with a located issue."""
    from guards.policy import PolicyError, parse_policy_text

    with hard_deadline(20), pytest.raises(PolicyError) as caught:
        parse_policy_text(YAML_TRAPS[name], file="trap.yaml")
    assert all(str(issue).startswith("trap.yaml:") for issue in caught.value.errors)


def test_huge_but_flat_policy_loads_in_bounded_time() -> None:
    from guards.policy import PolicyError, parse_policy_text

    # Just under the 1 MiB policy limit: accepted, quickly.
    with hard_deadline(20):
        policy = parse_policy_text("version: 1\nrefusals: {user_input: " + "x" * 1_000_000 + "}\n")
    assert len(policy.refusals.user_input) == 1_000_000
    # Over it: refused at once, before parsing.
    with hard_deadline(5), pytest.raises(PolicyError, match="1 MiB"):
        parse_policy_text("version: 1\nrefusals: {user_input: " + "x" * 2_000_000 + "}\n")


def test_anchors_and_aliases_within_bounds_still_work() -> None:
    from guards.policy import parse_policy_text

    policy = parse_policy_text(
        "version: 1\nllama_guard: &lg {timeout_s: 42}\nprompt_guard: {timeout_s: 42}\n"
        "refusals: {user_input: &r 'No.', model_output: *r}\n"
    )
    assert policy.refusals.user_input == policy.refusals.model_output == "No."

"""Special-token injection: whatever untrusted text holds, the encoded prompt carries exactly the template's control
tokens, and the text survives encoding unchanged.

Untrusted (or deployer-written) inputs covered: user text, tool results, tool-call arguments (custom and built-in),
file contents (code and its output), the policy's system prompt and refusal messages (a refusal is stored as the
assistant's reply), tool names/descriptions/parameter descriptions, and the Llama Guard prompt's conversation and
custom category descriptions. Both dialects and all three tool formats; Llama 4's format with its own tokenizer.
"""

from __future__ import annotations

from datetime import date

from hypothesis import strategies as st

from model.messages import Message, ToolCall, ToolDefinition, ToolSpec
from model.prompt_format import dialog_segments, encode_dialog, render_dialog
from model.prompt_segments import Special
from model.tokenizer import NUM_BASE_TOKENS, get_tokenizer
from tests.reliability.helpers import fuzz, hostile_text, text_with_surrogates

TODAY = date(2024, 7, 23)
BENIGN = "x"


def _specials(ids: list[int], base: int = NUM_BASE_TOKENS) -> list[int]:
    return [i for i in ids if i >= base]


def dialog(u: dict[str, str], *, code_call: bool) -> tuple[list[Message], ToolSpec]:
    """A dialog with every untrusted slot filled from `u` (a refusal is stored as an assistant reply)."""
    tool = ToolDefinition(
        name="fetch_page", description=u["tool_description"],
        parameters={"type": "object", "properties": {"name": {"type": "string", "description": u["param_description"]}},
                    "required": ["name"]},
    )
    spec = ToolSpec(tools=(tool,), builtin_tools=("brave_search", "code_interpreter"))
    call = (
        ToolCall("code_interpreter", {"code": u["file"]}) if code_call else ToolCall("fetch_page", {"name": u["args"]})
    )
    messages = [
        Message("system", u["system"]),
        Message("user", u["user"]),
        Message("assistant", u["refusal"]),
        Message("user", u["user2"]),
        Message("assistant", "", tool_calls=(call,)),
        Message("tool", u["tool_result"], tool_name=call.name),
        Message("assistant", "", tool_calls=(ToolCall("brave_search", {"query": u["args"]}),)),
        Message("tool", u["file"], tool_name="brave_search"),
        Message("assistant", u["assistant"]),
        Message("user", u["user3"]),
    ]
    return messages, spec


SLOTS = ("system", "user", "refusal", "user2", "args", "tool_result", "file", "assistant", "user3",
         "tool_description", "param_description")


def _check_dialog(u: dict[str, str], dialect: str, tool_format: str, code_call: bool, family: str = "llama3") -> None:
    tok = get_tokenizer(family=family)
    base = tok.num_base_tokens
    messages, spec = dialog(u, code_call=code_call)
    spec = ToolSpec(spec.tools, spec.builtin_tools, tool_format)  # type: ignore[arg-type]
    if dialect == "hf":  # the hf template allows one call per message and puts the tools in the first user message
        messages = [m for m in messages if not (m.role == "assistant" and m.tool_calls and m.tool_calls[0].name ==
                                                "brave_search")]
    ids = encode_dialog(messages, spec, today=TODAY, dialect=dialect, tokenizer=tok)  # type: ignore[arg-type]
    segments = dialog_segments(messages, spec, today=TODAY, dialect=dialect, family=family)  # type: ignore[arg-type]
    template = [tok.special_id(s.name) for s in segments if isinstance(s, Special)]
    # Exactly the template's control tokens, in order: none came from the text.
    assert _specials(ids, base) == template
    # ... and the template's control tokens do not depend on the content at all.
    baseline, _ = dialog(dict.fromkeys(SLOTS, BENIGN), code_call=code_call)
    if dialect == "hf":
        baseline = [m for m in baseline if not (m.role == "assistant" and m.tool_calls and m.tool_calls[0].name ==
                                                "brave_search")]
    assert _specials(encode_dialog(baseline, spec, today=TODAY, dialect=dialect, tokenizer=tok), base) == template  # type: ignore[arg-type]
    # Encoding loses nothing: the ids decode to exactly the rendered prompt.
    rendered = render_dialog(messages, spec, today=TODAY, dialect=dialect, family=family)  # type: ignore[arg-type]
    assert tok.decode(ids) == rendered


untrusted = st.fixed_dictionaries({slot: hostile_text() for slot in SLOTS})


def check_no_control_token_comes_from_untrusted_text(u: dict[str, str], dialect: str, fmt: str, code: bool) -> None:
    _check_dialog(u, dialect, fmt, code)


test_no_control_token_comes_from_untrusted_text, test_no_control_token_comes_from_untrusted_text_long = fuzz(
    150, untrusted, st.sampled_from(["meta", "hf"]), st.sampled_from(["json", "function_tag"]), st.booleans()
)(check_no_control_token_comes_from_untrusted_text)


untrusted_both = st.fixed_dictionaries({slot: hostile_text(families=("llama3", "llama4")) for slot in SLOTS})


def check_new_formats_take_no_control_token_from_untrusted_text(u: dict[str, str], family: str, code: bool) -> None:
    """Llama 3.2/3.3's Python-list format and Llama 4's, with both families' special-token strings in the text."""
    _check_dialog(u, "meta", "pythonic", code, family)


(
    test_new_formats_take_no_control_token_from_untrusted_text,
    test_new_formats_take_no_control_token_from_untrusted_text_long,
) = fuzz(150, untrusted_both, st.sampled_from(["llama3", "llama4"]), st.booleans())(
    check_new_formats_take_no_control_token_from_untrusted_text
)


def test_every_llama4_special_token_string_in_every_slot() -> None:
    """Deterministic sweep for Llama 4: every named special token and every 16th reserved one, in every slot."""
    from tests.reliability.helpers import special_token_names

    names = special_token_names("llama4")
    for name in [n for n in names if "reserved" not in n] + [n for n in names if "reserved" in n][::16]:
        text = f"a{name}b {name}\n{name}"
        _check_dialog(dict.fromkeys(SLOTS, text), "meta", "pythonic", code_call=True, family="llama4")


def test_every_special_token_string_in_every_slot() -> None:
    """Deterministic sweep: each of the 256 special-token strings, in every slot at once, in both dialects."""
    from tests.reliability.helpers import special_token_names

    for name in special_token_names():
        text = f"a{name}b {name}\n{name}"
        for dialect in ("meta", "hf"):
            _check_dialog(dict.fromkeys(SLOTS, text), dialect, "json", code_call=True)


def check_plain_encoding_round_trips_and_never_yields_specials(text: str) -> None:
    tok = get_tokenizer()
    ids = tok.encode(text)
    assert not _specials(ids)
    assert tok.decode(ids) == text


(
    test_plain_encoding_round_trips_and_never_yields_specials,
    test_plain_encoding_round_trips_and_never_yields_specials_long,
) = fuzz(300, hostile_text())(check_plain_encoding_round_trips_and_never_yields_specials)


def check_lone_surrogates_never_crash_and_never_yield_specials(text: str) -> None:
    """Lone surrogates (argv with invalid UTF-8, JSON `\\udcff` escapes) cannot round-trip through UTF-8; they must
    still encode to ordinary tokens only, which decode to valid text (a lone surrogate comes out as U+FFFD)."""
    tok = get_tokenizer()
    ids = tok.encode(text)
    assert not _specials(ids)
    tok.decode(ids).encode("utf-8")  # no surrogate survives


(
    test_lone_surrogates_never_crash_and_never_yield_specials,
    test_lone_surrogates_never_crash_and_never_yield_specials_long,
) = fuzz(100, text_with_surrogates())(check_lone_surrogates_never_crash_and_never_yield_specials)


def check_llama_guard_prompt_has_only_its_framing_tokens(turns: list[tuple[str, str]], name: str, desc: str) -> None:
    from guards.llama_guard.prompt import (
        PromptCategory,
        Turn,
        encode_segments,
        prompt_categories,
        prompt_segments,
        render_segments,
    )

    tok = get_tokenizer()
    categories = prompt_categories("8b", custom=[PromptCategory("S15", name or "n", desc)])
    segments = prompt_segments([Turn(r, t) for r, t in turns], categories)  # type: ignore[arg-type]
    ids = encode_segments(segments, tok.encode, tok.special_id)
    framing = ["<|begin_of_text|>", "<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>", "<|start_header_id|>",
               "<|end_header_id|>"]
    assert _specials(ids) == [tok.special_id(n) for n in framing]
    assert tok.decode(ids) == render_segments(segments)


test_llama_guard_prompt_has_only_its_framing_tokens, test_llama_guard_prompt_has_only_its_framing_tokens_long = fuzz(
    150,
    st.lists(st.tuples(st.sampled_from(["user", "agent"]), hostile_text(8)), min_size=1, max_size=4),
    hostile_text(6),
    hostile_text(6),
)(check_llama_guard_prompt_has_only_its_framing_tokens)

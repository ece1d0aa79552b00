"""The Llama Guard 3 and Llama Guard 4 prompt and verdict format, as pure functions.

Text: the Hugging Face Llama-Guard-3-8B chat template (task line, category block, conversation as `User: ...` /
`Agent: ...` turns separated by blank lines with contents stripped, closing instruction), inside one user turn of
Meta's Llama 3.1 format, so that the first generated token is the verdict:

    <|begin_of_text|><|start_header_id|>user<|end_header_id|>\\n\\n{body}<|eot_id|><|start_header_id|>assistant<|end_header_id|>\\n\\n

(The HF template itself renders a stray space before `<|begin_of_text|>` and omits the final blank line; tests pin
both differences against the real template.)

Llama Guard 4 (`variant: "4"`): the same body (task, S1..S14 with the same names, conversation, instruction) in one
user turn of Llama 4's format, which is what Meta's reference code sends it (llama-stack's Llama Guard shield builds
the body, `llama_models.llama4.chat_format` frames it; tests compare the ids token for token):

    <|begin_of_text|><|header_start|>user<|header_end|>\\n\\n{body}<|eot|><|header_start|>assistant<|header_end|>\\n\\n

`Framing` holds the four control tokens of each; `framing_for(variant)` picks one.

With an image (Llama Guard 4, guards.llama_guard.vision), the image's special tokens come first in the user turn,
before `Task: ...`, and the message that brought it reads `<image> {text}` in the conversation (plain text), as
llama-stack's vision shield builds it (`head_segments(..., image=...)`, `prompt_tail(..., image=True)`).

Categories: the variant's built-in codes in order, minus the excluded ones, keeping their codes (as llama-stack's
provider does: no renumbering, so a code the model answers means the same thing whatever is excluded). A custom
category with a built-in code redefines that entry in place; a custom category with a new code (`S15`, `S16`, ...,
numbered after the variant's last built-in code, which the policy checks) is appended, sorted by number. Built-in
entries are the template's one-liners (`S1: Violent Crimes.`); a custom entry is `S15: Name.` followed, when it has
a description, by the description on the next lines (the layout of llama-recipes' `build_custom_prompt` with
`with_policy=True`).

Encoding: the prompt is a list of segments; framing special tokens become ids, every piece of text (including the
template's own text) is encoded as plain text, so untrusted content can never produce a control token. The head
(framing, task, categories, up to `<BEGIN CONVERSATION>\\n\\n`) does not depend on the conversation, and it ends on a
pre-tokenizer boundary (`>\\n\\n` before a letter), so its ids are a fixed prefix of every prompt: the scorer caches
its keys and values once.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Literal

from guards.policy.categories import (
    LLAMA_GUARD_PROMPT_NAMES,
    LlamaGuardVariant,
    categories_for_variant,
    code_number,
    family_for_variant,
)

Role = Literal["user", "agent"]

BEGIN_OF_TEXT = "<|begin_of_text|>"
START_HEADER = "<|start_header_id|>"
END_HEADER = "<|end_header_id|>"
EOT = "<|eot_id|>"
IMAGE_PLACEHOLDER = "<image>"  # where the image was in its message: plain text, as llama-stack writes it


@dataclass(frozen=True)
class Framing:
    """The control tokens around the body: a family's begin, header start/end and end of turn."""

    family: str
    begin: str
    start_header: str
    end_header: str
    eot: str


LLAMA3_FRAMING = Framing("llama3", BEGIN_OF_TEXT, START_HEADER, END_HEADER, EOT)
LLAMA4_FRAMING = Framing("llama4", BEGIN_OF_TEXT, "<|header_start|>", "<|header_end|>", "<|eot|>")
_FRAMINGS = {f.family: f for f in (LLAMA3_FRAMING, LLAMA4_FRAMING)}


def framing_for(variant: str) -> Framing:
    """Llama Guard 3 (8b, 1b): Llama 3.1's format; Llama Guard 4 (4): Llama 4's."""
    return _FRAMINGS[family_for_variant(variant)]

_ROLE_LABEL: dict[str, str] = {"user": "User", "agent": "Agent"}

_TASK = (
    "Task: Check if there is unsafe content in '{role}' messages in conversations according our safety policy "
    "with the below categories.\n\n"
)
_INSTRUCTION = (
    "<END CONVERSATION>\n\nProvide your safety assessment for ONLY THE LAST {role} message in the above conversation:"
    "\n - First line must read 'safe' or 'unsafe'."
    "\n - If unsafe, a second line must include a comma-separated list of violated categories."
)


@dataclass(frozen=True)
class Turn:
    """One message of the conversation under check. `agent` is the assistant (Meta's label)."""

    role: Role
    content: str


@dataclass(frozen=True)
class PromptCategory:
    code: str
    name: str
    description: str = ""


@dataclass(frozen=True)
class Special:
    """A control token of the framing, encoded as its id."""

    name: str


@dataclass(frozen=True)
class Text:
    """Text encoded as plain text: special-token strings inside it stay ordinary characters."""

    text: str


Segment = Special | Text


def as_turn(role: str, content: str) -> Turn:
    """`user` -> User, `assistant`/`agent` -> Agent; anything else is an error (a tool's text is checked as the
    role that brought it into the conversation, which the caller decides)."""
    roles: dict[str, Role] = {"user": "user", "assistant": "agent", "agent": "agent"}
    normalized = roles.get(role)
    if normalized is None:
        raise ValueError(f"Llama Guard checks 'user' or 'assistant'/'agent' messages, not {role!r}")
    return Turn(normalized, content)


def prompt_categories(
    variant: LlamaGuardVariant = "8b",
    *,
    enabled: Iterable[str] | None = None,
    excluded: Iterable[str] = (),
    custom: Iterable[PromptCategory] = (),
) -> tuple[PromptCategory, ...]:
    """The category block's entries, in order (see the module docstring for the rules)."""
    builtin = categories_for_variant(variant)
    enabled_set = set(builtin) if enabled is None else set(enabled)
    excluded_set = set(excluded)
    for code in enabled_set | excluded_set:
        code_number(code)  # validates the shape
    customs = {c.code: c for c in custom}
    if set(customs) & excluded_set:
        raise ValueError(f"categories both excluded and customised: {sorted(set(customs) & excluded_set)}")
    entries: list[PromptCategory] = []
    for code in builtin:
        if code in excluded_set or code not in enabled_set:
            continue
        entries.append(customs.get(code) or PromptCategory(code, LLAMA_GUARD_PROMPT_NAMES[code]))
    new = sorted((c for code, c in customs.items() if code not in builtin), key=lambda c: code_number(c.code))
    entries.extend(new)
    if not entries:
        raise ValueError("no Llama Guard category is enabled")
    return tuple(entries)


def render_categories(categories: Sequence[PromptCategory]) -> str:
    lines = []
    for category in categories:
        name = category.name.strip()
        line = f"{category.code}: {name}" + ("" if name.endswith(".") else ".")
        description = category.description.strip()
        lines.append(f"{line}\n{description}" if description else line)
    return "\n".join(lines)


def prompt_head(role: Role, categories: Sequence[PromptCategory]) -> str:
    """The body's constant start: task line, category block, `<BEGIN CONVERSATION>` and its blank line."""
    return (
        _TASK.format(role=_ROLE_LABEL[role])
        + "<BEGIN UNSAFE CONTENT CATEGORIES>\n"
        + render_categories(categories)
        + "\n<END UNSAFE CONTENT CATEGORIES>\n\n<BEGIN CONVERSATION>\n\n"
    )


def shape_turns(turns: Sequence[Turn]) -> tuple[Turn, ...]:
    """The conversation in the shape Meta's format needs: it starts with a User turn and roles alternate.

    As llama-stack's Llama Guard shield does with a doubled first user message, the earlier of two same-role turns
    is dropped when the later one is the checked (last) turn, so the checked text stays exactly as given; earlier
    runs of same-role context turns (e.g. a user message whose turn ended in an error, then the next one) are merged
    into one turn, so no context is lost. Leading Agent turns are dropped; an Agent turn with no User turn before it
    gets an empty User turn (the HF template rejects a conversation that does not start with User)."""
    _check_turns(turns)
    *context, last = turns
    merged: list[Turn] = []
    for turn in context:
        if not merged and turn.role == "agent":
            continue
        if merged and merged[-1].role == turn.role:
            merged[-1] = Turn(turn.role, f"{merged[-1].content.strip()}\n\n{turn.content.strip()}")
        else:
            merged.append(turn)
    if merged and merged[-1].role == last.role:
        merged.pop()
    if not merged and last.role == "agent":
        merged.append(Turn("user", ""))
    return (*merged, last)


def prompt_tail(turns: Sequence[Turn], image: bool = False) -> str:
    """The conversation (contents stripped, shaped by `shape_turns`) and the closing instruction for the last turn's
    role. With `image`, the last User turn (the one that brought the image) reads `<image> {text}` (plain text), as
    llama-stack's vision shield renders a message holding the image (`interleaved_content_as_str`)."""
    turns = shape_turns(turns)
    contents = [t.content.strip() for t in turns]
    if image:
        last_user = max(i for i, t in enumerate(turns) if t.role == "user")  # shape_turns starts with a User turn
        contents[last_user] = f"{IMAGE_PLACEHOLDER} {contents[last_user]}".strip()
    conversation = "".join(f"{_ROLE_LABEL[t.role]}: {c}\n\n" for t, c in zip(turns, contents, strict=True))
    return conversation + _INSTRUCTION.format(role=_ROLE_LABEL[turns[-1].role])


def checked_role(turns: Sequence[Turn]) -> Role:
    _check_turns(turns)
    return turns[-1].role


def framing_before(framing: Framing = LLAMA3_FRAMING) -> list[Segment]:
    f = framing
    return [Special(f.begin), Special(f.start_header), Text("user"), Special(f.end_header), Text("\n\n")]


def framing_after(framing: Framing = LLAMA3_FRAMING) -> list[Segment]:
    f = framing
    return [Special(f.eot), Special(f.start_header), Text("assistant"), Special(f.end_header), Text("\n\n")]


def prompt_segments(
    turns: Sequence[Turn], categories: Sequence[PromptCategory], framing: Framing = LLAMA3_FRAMING,
    image: Sequence[str] = (),
) -> list[Segment]:
    """Head segments then tail segments; `head_segments` is a prefix of this list."""
    return head_segments(checked_role(turns), categories, framing, image) + tail_segments(turns, framing, bool(image))


def head_segments(
    role: Role, categories: Sequence[PromptCategory], framing: Framing = LLAMA3_FRAMING, image: Sequence[str] = ()
) -> list[Segment]:
    """`image`: an image's special tokens (model.image_tiles.image_token_strings), placed where Meta's reference
    places a vision shield's image: first in the user turn, before the prompt text (guards.llama_guard.vision)."""
    return [*framing_before(framing), *(Special(name) for name in image), Text(prompt_head(role, categories))]


def tail_segments(turns: Sequence[Turn], framing: Framing = LLAMA3_FRAMING, image: bool = False) -> list[Segment]:
    return [Text(prompt_tail(turns, image)), *framing_after(framing)]


def render_segments(segments: Iterable[Segment]) -> str:
    return "".join(s.name if isinstance(s, Special) else s.text for s in segments)


def render_prompt(
    turns: Sequence[Turn], categories: Sequence[PromptCategory], framing: Framing = LLAMA3_FRAMING,
    image: Sequence[str] = (),
) -> str:
    """The whole prompt as text, special tokens spelled out (what `assistant guard prompt` prints)."""
    return render_segments(prompt_segments(turns, categories, framing, image))


def encode_segments(
    segments: Iterable[Segment], encode_plain: Callable[[str], list[int]], special_id: Callable[[str], int]
) -> list[int]:
    ids: list[int] = []
    for segment in segments:
        if isinstance(segment, Special):
            ids.append(special_id(segment.name))
        else:
            ids.extend(encode_plain(segment.text))
    return ids


# --- the verdict -------------------------------------------------------------------------------------------------

_VERDICT = re.compile(r"(?:safe|unsafe\n(S[1-9][0-9]*(?:,S[1-9][0-9]*)*))")


@dataclass(frozen=True)
class ParsedVerdict:
    unsafe: bool
    categories: tuple[str, ...] = ()


def parse_verdict(text: str) -> ParsedVerdict | None:
    """`safe` or `unsafe\\nS1,S2` (surrounding whitespace ignored, a space after a comma tolerated); anything else,
    including `unsafe` without a category line, is None, which callers treat as a guard error."""
    cleaned = text.strip().replace(", ", ",")
    match = _VERDICT.fullmatch(cleaned)
    if match is None:
        return None
    if match.group(1) is None:
        return ParsedVerdict(unsafe=False)
    return ParsedVerdict(unsafe=True, categories=tuple(dict.fromkeys(match.group(1).split(","))))


def _check_turns(turns: Sequence[Turn]) -> None:
    if not turns:
        raise ValueError("Llama Guard needs at least one message to check")
    for turn in turns:
        if turn.role not in _ROLE_LABEL:
            raise ValueError(f"unknown Llama Guard role {turn.role!r} (expected 'user' or 'agent')")
        if not isinstance(turn.content, str):
            raise TypeError(f"message content must be text, not {type(turn.content).__name__}")

"""A completion as the model generated it: its text, which parts of it were special tokens generated as ids, and
the cut at the first stop token.

A special-token string such as `<|python_tag|>` can reach the model's output two ways: generated as its special id
(a control token), or spelled out in ordinary tokens (for example when the model repeats what a user typed). The
decoded text is the same, so the text alone cannot tell them apart. Backends therefore yield a `SpecialToken` delta
for a special id and plain `str` for everything else; `CompletionBuilder` keeps where the real ones are
(`special_spans`), and the parser and the prompt encoder treat only those spans as control tokens.

Nothing after the first real stop token is kept: `CompletionBuilder.add` returns `""` for it and the completion
records `dropped=True` (the agent reports it with a notice).
"""

from __future__ import annotations

import re
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from model.messages import Span, StopReason
from model.tokenizer_specs import spec_for
from model.tool_parser import parse_completion

if TYPE_CHECKING:
    from model.tool_parser import ParsedCompletion

# Both families' stop tokens and tool-call openers: a span counts only when the backend marked it as a special id, and
# a Llama 3 model has no `<|eot|>` id (nor a Llama 4 model an `<|eot_id|>`), so one table serves both.
STOP_REASONS: dict[str, StopReason] = {
    "<|eot_id|>": "end_of_turn",
    "<|eom_id|>": "end_of_message",
    "<|end_of_text|>": "end_of_turn",
    "<|eot|>": "end_of_turn",
    "<|eom|>": "end_of_message",
}
PYTHON_TAG = "<|python_tag|>"
PYTHON_TAGS = frozenset({PYTHON_TAG, "<|python_start|>"})
SPECIAL_PATTERN = re.compile(r"<\|[a-z0-9_]+\|>")


class SpecialToken(str):
    """A delta that is exactly one special token the model generated as its id (`<|python_tag|>`, `<|eot_id|>`)."""

    __slots__ = ()


def trusted_spans(text: str) -> tuple[Span, ...]:
    """Every special-token string in `text` counted as a real special token. Only for text that stands in for the
    model's own ids (a scripted model file, a test fixture, a dialog the user wrote for `assistant prompt`)."""
    return tuple(match.span() for match in SPECIAL_PATTERN.finditer(text))


def family_spans(text: str, family: str) -> tuple[Span, ...]:
    """`trusted_spans` restricted to the family's own special tokens: a Llama 4 `<|eot|>` in Llama 3 text (or a Llama 3
    `<|eot_id|>` in Llama 4 text) is not a token that model has, so it stays plain text."""
    names = spec_for(family).special_names
    return tuple(span for span in trusted_spans(text) if text[span[0] : span[1]] in names)


def spans_within(spans: Sequence[Span], end: int) -> tuple[Span, ...]:
    return tuple((start, stop) for start, stop in spans if stop <= end)


@dataclass(frozen=True)
class Completion:
    """What is kept of one model call."""

    text: str  # up to and including the first real stop token
    special_spans: tuple[Span, ...]  # real special tokens in `text`
    stop_reason: StopReason | None
    dropped: bool  # the backend produced something after the first stop token; it was discarded

    @property
    def raw(self) -> str:
        """The text without its final stop token: what an assistant message stores as `raw`."""
        if self.stop_reason is not None and self.special_spans:
            return self.text[: self.special_spans[-1][0]]
        return self.text

    @property
    def raw_spans(self) -> tuple[Span, ...]:
        return spans_within(self.special_spans, len(self.raw))

    @property
    def answer_text(self) -> str:
        """The text before the first real `<|python_tag|>` or stop token (what may be shown as an answer)."""
        for start, end in self.special_spans:
            if self.text[start:end] in PYTHON_TAGS or self.text[start:end] in STOP_REASONS:
                return self.text[:start]
        return self.text

    def parse(self, *, builtin_tools: Collection[str] = (), tools: Collection[str] | None = None) -> ParsedCompletion:
        return parse_completion(self.text, builtin_tools=builtin_tools, tools=tools, special_spans=self.special_spans)


class CompletionBuilder:
    """Collects the deltas of one model call, keeping which are real special tokens and cutting at the first stop."""

    def __init__(self) -> None:
        self._pieces: list[str] = []
        self._length = 0
        self._spans: list[Span] = []
        self._stop: StopReason | None = None
        self._dropped = False
        self._answer_end: int | None = None  # where the first real python tag or stop token starts

    @property
    def stopped(self) -> bool:
        return self._stop is not None

    @property
    def dropped(self) -> bool:
        return self._dropped

    @property
    def text(self) -> str:
        if len(self._pieces) > 1:
            self._pieces = ["".join(self._pieces)]
        return self._pieces[0] if self._pieces else ""

    @property
    def special_spans(self) -> tuple[Span, ...]:
        return tuple(self._spans)

    def add(self, delta: str) -> str:
        """Record one delta; returns the part of it that is kept ("" once the first stop token has been seen)."""
        if self._stop is not None:
            if delta:
                self._dropped = True
            return ""
        if not delta:
            return ""
        if isinstance(delta, SpecialToken):
            token = str(delta)
            self._spans.append((self._length, self._length + len(token)))
            if self._answer_end is None and (token in PYTHON_TAGS or token in STOP_REASONS):
                self._answer_end = self._length
            self._stop = STOP_REASONS.get(token)
            kept = token
        else:
            kept = str(delta)
        self._pieces.append(kept)
        self._length += len(kept)
        return kept

    def answer_text(self) -> str:
        """The kept text before the first real `<|python_tag|>` or stop token (what may be shown as an answer)."""
        text = self.text
        return text if self._answer_end is None else text[: self._answer_end]

    def result(self) -> Completion:
        return Completion(self.text, tuple(self._spans), self._stop, self._dropped)


def completion_from_text(text: str, *, trusted: bool) -> Completion:
    """A completion from whole text: `trusted` marks every special-token string as real (scripted files, tests)."""
    builder = CompletionBuilder()
    position = 0
    for start, end in trusted_spans(text) if trusted else ():
        builder.add(text[position:start])
        builder.add(SpecialToken(text[start:end]))
        position = end
    builder.add(text[position:])
    return builder.result()

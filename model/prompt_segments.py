"""A prompt as a list of segments: control tokens by name (`Special`) and plain text (`Text`).

Rendering and encoding read the same list, so the prompt string and the token ids cannot disagree. Text is always
encoded with special tokens disabled: a `<|eot_id|>` typed by a user stays plain text. An image is one `ImageSlot`:
the image and the control tokens that stand for it (`model.image_tiles.image_token_strings`), rendered as those
tokens' strings and encoded as their ids.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from functools import cache
from typing import TYPE_CHECKING

from model.images import ImageData
from model.messages import Span
from model.tokenizer import special_token_names

if TYPE_CHECKING:
    from model.tokenizer import Llama3Tokenizer

PYTHON_TAG = "<|python_tag|>"


class PromptFormatError(ValueError):
    """The dialog cannot be put in the requested prompt format (the message names the problem)."""


@dataclass(frozen=True)
class Special:
    name: str


@dataclass(frozen=True)
class Text:
    text: str


@dataclass(frozen=True)
class ImageSlot:
    image: ImageData
    tokens: tuple[str, ...]  # control-token names, `<|image_start|>` ... `<|image_end|>`


Segment = Special | Text | ImageSlot

BOS = Special("<|begin_of_text|>")
EOT = Special("<|eot_id|>")
EOM = Special("<|eom_id|>")
PYTHON = Special(PYTHON_TAG)


def header(role: str) -> list[Segment]:
    return [Special("<|start_header_id|>"), Text(role), Special("<|end_header_id|>"), Text("\n\n")]


def raw_segments(raw: str, special_spans: Sequence[Span] | None, family: str = "llama3") -> Iterator[Segment]:
    """Model output re-encoded verbatim: the spans the model generated as special ids are control tokens, everything
    else (a `<|python_tag|>` it spelled out in ordinary tokens included) is plain text. None: no span is special.
    A span must hold one of the family's special tokens."""
    position = 0
    for start, end in sorted(special_spans or ()):
        name = raw[start:end]
        if start < position or end > len(raw) or name not in _special_names(family):
            raise PromptFormatError(
                f"special_spans ({start}, {end}) of an assistant message do not cover one special token in its raw text"
            )
        if start > position:
            yield Text(raw[position:start])
        yield Special(name)
        position = end
    if position < len(raw):
        yield Text(raw[position:])


@cache
def _special_names(family: str) -> frozenset[str]:
    return frozenset(special_token_names(family))


def render_segments(segments: Iterable[Segment]) -> str:
    return "".join(_rendered(seg) for seg in segments)


def _rendered(seg: Segment) -> str:
    if isinstance(seg, Special):
        return seg.name
    return "".join(seg.tokens) if isinstance(seg, ImageSlot) else seg.text


def segment_images(segments: Iterable[Segment]) -> tuple[ImageData, ...]:
    """The images of a segment list in prompt order: the order of their `<|patch|>` tokens."""
    return tuple(seg.image for seg in segments if isinstance(seg, ImageSlot))


def encode_segments(segments: Iterable[Segment], tokenizer: Llama3Tokenizer, *, merge_text: bool) -> list[int]:
    """Ids of a segment list. `merge_text` encodes each run of text between control tokens as one string (what a
    Hugging Face tokenizer does with a rendered template); otherwise each `Text` is encoded on its own (what Meta's
    `ChatFormat` does)."""
    ids: list[int] = []
    pending: list[str] = []
    for seg in segments:
        if isinstance(seg, Text):
            if merge_text:
                pending.append(seg.text)
            else:
                ids.extend(tokenizer.encode(seg.text))
            continue
        if pending:
            ids.extend(tokenizer.encode("".join(pending)))
            pending = []
        if isinstance(seg, ImageSlot):
            ids.extend(tokenizer.special_id(name) for name in seg.tokens)
        else:
            ids.append(tokenizer.special_id(seg.name))
    if pending:
        ids.extend(tokenizer.encode("".join(pending)))
    return ids

"""Context window management: drop the oldest whole turns until the prompt fits.

The system prompt and tool definitions are added by the prompt encoder, so they always stay; the current turn is
never dropped. The window only moves forward (`already_dropped` is kept in the state), so the prompt prefix stays
stable between drops, which is what main-model KV-cache reuse needs.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from assistant.agent.state import MessageDict
from model.images import ImageData


@dataclass(frozen=True)
class Window:
    start: int  # first message index that goes into the prompt
    prompt_ids: list[int]
    newly_dropped: int  # messages dropped by this call (0 = nothing changed)
    images: tuple[ImageData, ...] = ()  # the prompt's images in prompt order (GenerationParams.images)


class ContextOverflow(Exception):
    """Even the current turn alone does not fit the model's context window."""


def turn_starts(messages: Sequence[MessageDict]) -> list[int]:
    return [i for i, m in enumerate(messages) if m["role"] == "user"]


def fit_window(
    messages: Sequence[MessageDict],
    encode: Callable[[Sequence[MessageDict]], list[int]],
    *,
    budget: int,
    already_dropped: int,
    current_turn_start: int,
) -> Window:
    """Encode messages[start:] with the smallest `start >= already_dropped` on a turn boundary that fits `budget`."""
    candidates = [already_dropped] + [i for i in turn_starts(messages) if already_dropped < i <= current_turn_start]
    for start in candidates:
        ids = encode(messages[start:])
        if len(ids) <= budget:
            return Window(start, ids, start - already_dropped)
    raise ContextOverflow(
        f"the current turn needs more than the {budget} prompt tokens the model's context window leaves; "
        "shorten the message or raise models.main.context_window"
    )

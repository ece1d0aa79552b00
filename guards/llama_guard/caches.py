"""Which KV cache a Llama Guard check starts from: the longest prefix of its ids that a recent check of the same
role computed (`llama_guard.cached_conversations` of them kept, newest first), else a copy of the constant head's."""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence
from typing import Any

Entry = tuple[list[int], Any]  # a check's ids and the KV cache it left
_WORTH_COPYING = 16  # tokens beyond the head that another conversation's cache must share to be copied


def reusable_cache(
    entries: list[Entry], ids: list[int], head: int, kept: int, head_cache: Callable[[], Any]
) -> tuple[Any, int]:
    """A cache holding the longest prefix of `ids` known: a recent check's (cropped to what it shares with `ids`),
    or a copy of the head's (its first `head` ids). Returns the cache and how many of `ids` it covers. The same
    conversation's entry is taken out of `entries` (this check extends it in place); another conversation's is
    copied, and only when it shares enough to be worth the copy."""
    # at least one token must run to get the verdict's logits
    shared = [min(_common_prefix(last_ids, ids), len(ids) - 1) for last_ids, _ in entries]
    best = max(range(len(entries)), key=shared.__getitem__, default=None)
    if best is not None and shared[best] > head:
        common = shared[best]
        entry_ids, last_cache = entries[best]
        if kept == 1 or 2 * (common - head) >= len(entry_ids) - head:
            entries.pop(best)  # the same conversation's: this check extends it in place
        elif common - head >= _WORTH_COPYING:
            last_cache = copy.deepcopy(last_cache)  # another conversation's: left to it, a copy is cropped
        else:
            return copy.deepcopy(head_cache()), head
        surplus = last_cache.get_seq_length() - common
        if surplus >= 0:
            if surplus:
                last_cache.crop(-surplus)  # transformers 5.2x crops by a negative count only
            return last_cache, common
    return copy.deepcopy(head_cache()), head


def _common_prefix(a: Sequence[int], b: Sequence[int]) -> int:
    common = 0
    for old, new in zip(a, b, strict=False):
        if old != new:
            break
        common += 1
    return common

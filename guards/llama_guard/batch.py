"""Several Llama Guard checks in one forward pass, each on its own conversation's cached prefix.

Why: in a guard process serving many conversations (`assistant serve`), checks wait for each other; one forward
pass over k checks costs less than k passes wherever the work around each call, or the weights' reads, dominates
(docs/PERFORMANCE.md, "Cross-request batching"). Each check keeps its KV-cache reuse: the caches of the checks'
conversations (of different lengths) are merged into one batch, the new tokens run once, and each row's cache is
split back out for that conversation's next check.

Row layout (P: padding, masked out of every attention; positions given explicitly, so each text sits at its own
positions, as it would alone):

    [P P  cached_i ][P P  new_i]      every row ends at the same column, so one last-position logit serves all

Padding is work too: a check of 50 new tokens beside one of 500 runs 500, and every row attends over the longest
cached conversation. `plan_batches` therefore groups only checks of similar sizes (measured on the tiny Llama Guard,
one thread: four checks of 50 tokens on 600 cached run in 0.58 of the time one by one; with one check of 500
tokens among them, in 1.75 of it); the others run one by one.

Only the Llama 3 architecture (Llama Guard 3) is batched: Llama 4's attention derives its scaling and its chunked
mask from the column, not the position (`batchable`), so Llama Guard 4 checks run one by one.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any


def batchable(model: Any) -> bool:
    """Whether checks on `model` may share a forward pass with padding (positions from `position_ids` alone)."""
    return getattr(getattr(model, "config", None), "model_type", None) == "llama"


MAX_PADDED_TOKENS = 1.3  # padded new tokens / real new tokens a batch may run
MAX_PADDED_ATTENTION = 1.5  # padded (query x key) pairs / real pairs


def plan_batches(sizes: Sequence[tuple[int, int]]) -> list[list[int]]:
    """Groups of the indexes of `sizes` (new tokens, cached tokens per check) to score together: checks sorted by
    size, each joining the group before it while the group's padding stays within the limits above. A group of one
    runs alone."""
    order = sorted(range(len(sizes)), key=lambda i: sizes[i])
    groups: list[list[int]] = []
    for index in order:
        if groups and _pads_little([sizes[i] for i in [*groups[-1], index]]):
            groups[-1].append(index)
        else:
            groups.append([index])
    return groups


def _pads_little(group: list[tuple[int, int]]) -> bool:
    width_new = max(new for new, _ in group)
    width_past = max(past for _, past in group)
    tokens = sum(new for new, _ in group)
    pairs = sum(new * (past + new) for new, past in group)
    return (len(group) * width_new <= MAX_PADDED_TOKENS * tokens
            and len(group) * width_new * (width_past + width_new) <= MAX_PADDED_ATTENTION * pairs)


def forward_batch(
    model: Any, cache_kw: str, rows: Sequence[tuple[Any, list[int]]], pad_id: int
) -> tuple[Any, list[Any]]:
    """One forward pass over `rows` (each a DynamicCache of one conversation's cached tokens and the ids new on top
    of it). Returns the last position's logits per row ([rows, vocabulary]) and each row's cache afterwards, its
    padding removed (what that row alone would have left)."""
    import torch
    from transformers import DynamicCache

    caches = [cache for cache, _ in rows]
    news = [new for _, new in rows]
    if any(not new for new in news):
        raise ValueError("every batched check needs at least one new token")
    past = [cache.get_seq_length() for cache in caches]
    width_past, width_new = max(past), max(len(new) for new in news)
    count = len(rows)
    merged = []
    for layer in range(len(caches[0].layers)):
        sample = caches[0].layers[layer].keys
        shape = (count, sample.shape[1], width_past, sample.shape[3])
        keys, values = sample.new_zeros(shape), sample.new_zeros(shape)
        for row, cache in enumerate(caches):
            keys[row, :, width_past - past[row]:] = cache.layers[layer].keys[0]
            values[row, :, width_past - past[row]:] = cache.layers[layer].values[0]
        merged.append((keys, values))
    device = caches[0].layers[0].keys.device
    input_ids = torch.full((count, width_new), pad_id, dtype=torch.long, device=device)
    mask = torch.zeros((count, width_past + width_new), dtype=torch.long, device=device)
    positions = torch.zeros((count, width_new), dtype=torch.long, device=device)
    for row, new in enumerate(news):
        input_ids[row, width_new - len(new):] = torch.tensor(new, dtype=torch.long, device=device)
        mask[row, width_past - past[row]:width_past] = 1
        mask[row, width_past + width_new - len(new):] = 1
        end = past[row] + len(new)
        positions[row] = torch.arange(end - width_new, end, device=device).clamp(min=0)  # padding: any position
    out = model(input_ids=input_ids, attention_mask=mask, position_ids=positions, use_cache=True, logits_to_keep=1,
                **{cache_kw: DynamicCache(merged)})
    full = getattr(out, cache_kw)
    split = []
    for row, new in enumerate(news):
        keep = torch.cat([torch.arange(width_past - past[row], width_past, device=device),
                          torch.arange(width_past + width_new - len(new), width_past + width_new, device=device)])
        split.append(DynamicCache([(layer.keys[row:row + 1].index_select(2, keep),
                                    layer.values[row:row + 1].index_select(2, keep)) for layer in full.layers]))
    return out.logits[:, -1], split

"""bench/guard_batching.py runs on the tiny Llama Guard: the mixed-size padded pass and the batcher as built print
their rows (not timings: the figures are in docs/PERFORMANCE.md)."""

from __future__ import annotations

from pathlib import Path

from bench import guard_batching


def test_the_mixed_sizes_and_the_batcher_rows(tiny_models_cache: Path) -> None:
    mixed = guard_batching.measure_mixed(tiny_models_cache, ((60, 8), (200, 30)), repeats=1)
    assert mixed["mixed"] == [[60, 8], [200, 30]]
    batcher = guard_batching.measure_batcher(tiny_models_cache, 2, steps=1)  # raises if a batched check failed
    for row in (mixed, batcher):
        assert row["one_by_one_ms"] > 0 and row["batched_ms"] > 0 and row["batched_vs_one_by_one"] > 0

"""Would batching Llama Guard checks from several conversations into one forward pass pay on this machine?

    python bench/guard_batching.py [--json] [--threads 1] [--sizes tiny,1b-2layers]

The best case for batching: k checks of the same length (`tail` new tokens) on cached conversations of the same
length (`past` tokens), the batch's cache built in advance (merging k conversations' caches, which a real batcher
must do, costs nothing here). Times one forward pass of the k checks together against the k passes one after the
other, with the guard processes' torch threads (1). Models: the tiny Llama Guard the benchmarks use, and a randomly
initialised Llama of Llama Guard 3 1B's width (hidden 2048, 2 of its 16 layers) to see what real-width matrices do.
If the batched pass is not clearly faster here, cross-request batching cannot make the server faster on this CPU
(docs/PERFORMANCE.md, "Cross-request batching").

Then checks of mixed sizes in one padded pass (`mixed`: why the batcher groups checks by size), and the batcher
as built (`LlamaGuard.check_text_batch`, what a guard process with `llama_guard.batch_checks` runs):
k conversations of different lengths, each answer streamed and checked every 40 words, as `check_text` one after the
other against one `check_text_batch` call, merging and splitting the conversations' caches included (`batcher`).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))
CHECKS = (1, 2, 4, 8)
SHAPES = {  # (tail, past): a streamed chunk's check; a part of a tool result's check
    "tiny": ((48, 600), (300, 1200)),
    "1b-2layers": ((48, 600),),  # one thread: a wider check takes seconds
}


def model(size: str, models: Path) -> Any:
    import torch
    from transformers import AutoModelForCausalLM, LlamaConfig, LlamaForCausalLM

    if size == "tiny":
        return AutoModelForCausalLM.from_pretrained(models / "llama-guard", dtype=torch.float32).eval()
    config = LlamaConfig(vocab_size=128256, hidden_size=2048, intermediate_size=8192, num_hidden_layers=2,
                         num_attention_heads=32, num_key_value_heads=8, tie_word_embeddings=True)
    return LlamaForCausalLM(config).eval()


def timed(fn: Any, repeats: int) -> float:
    fn()
    samples = []
    for _ in range(repeats):
        started = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - started)
    return statistics.median(samples)


def measure(llm: Any, tail: int, past: int, k: int, repeats: int) -> dict[str, float]:
    import torch

    with torch.inference_mode():
        prefix = torch.randint(0, 1000, (k, past))
        cache = llm(input_ids=prefix, use_cache=True, logits_to_keep=1).past_key_values  # k conversations, cached
        singles = [llm(input_ids=prefix[i : i + 1], use_cache=True, logits_to_keep=1).past_key_values
                   for i in range(k)]
        new = torch.randint(0, 1000, (k, tail))

        def one_by_one() -> None:
            for i in range(k):
                llm(input_ids=new[i : i + 1], past_key_values=singles[i], use_cache=True, logits_to_keep=1)
                singles[i].crop(-tail)

        def batched() -> None:
            llm(input_ids=new, past_key_values=cache, use_cache=True, logits_to_keep=1)
            cache.crop(-tail)

        sequential_s, batched_s = timed(one_by_one, repeats), timed(batched, repeats)
    return {"checks": k, "tail": tail, "past": past, "one_by_one_ms": round(sequential_s * 1000, 2),
            "batched_ms": round(batched_s * 1000, 2), "batched_vs_one_by_one": round(batched_s / sequential_s, 3)}


MIXED = (  # (cached tokens, new tokens) per check: why the batcher groups checks by size (`plan_batches`)
    ((600, 50),) * 4,
    ((300, 50), (900, 50), (1500, 50), (2100, 50)),
    ((1500, 500), (600, 50), (900, 50), (1200, 50)),
    ((1500, 500), (600, 50), (900, 50), (1200, 50), (300, 60), (700, 40), (2000, 50), (1000, 50)),
)


def measure_mixed(models: Path, shapes: tuple[tuple[int, int], ...], repeats: int) -> dict[str, Any]:
    """Checks of the given sizes in one padded pass (`forward_batch`, every check together, no grouping) against
    one pass each, on the tiny Llama Guard; the caches built in advance and copied per call."""
    import copy
    import random

    import torch

    from guards.llama_guard.batch import forward_batch
    from guards.llama_guard.guard import LlamaGuard

    guard = LlamaGuard.load(models / "llama-guard", dtype="float32")
    rng = random.Random(0)
    rows = []
    with torch.inference_mode():
        for past, new in shapes:
            ids = [rng.randrange(1000, 5000) for _ in range(past + new)]
            _, cache = guard._forward(ids[:past], None)
            rows.append((cache, ids[past:]))

        def one_by_one() -> None:
            for cache, new in rows:
                guard._forward(new, copy.deepcopy(cache))

        def together() -> None:
            forward_batch(guard.model, guard._cache_kw, [(copy.deepcopy(c), n) for c, n in rows], guard.safe_id)

        a, b = timed(one_by_one, repeats), timed(together, repeats)
    return {"model": "tiny", "mixed": [list(shape) for shape in shapes], "one_by_one_ms": round(a * 1000, 2),
            "batched_ms": round(b * 1000, 2), "batched_vs_one_by_one": round(b / a, 3)}


def measure_batcher(models: Path, k: int, steps: int) -> dict[str, Any]:
    """k conversations (histories of 20 to 20 + 60 (k-1) words), each answer grown by 40 words per step; per step
    the k checks one by one on one guard, batched on another (the same model); medians over the steps after the
    first (which builds each conversation's cache)."""
    from guards.llama_guard.guard import LlamaGuard

    base = LlamaGuard.load(models / "llama-guard", dtype="float32")
    alone, together = (LlamaGuard(base.model, tokenizer=base.tokenizer, categories=base.categories,
                                  cached_conversations=k) for _ in range(2))
    words = ["the", "garden", "report", "meeting", "water", "road", "house", "river", "bridge", "mill", "story",
             "notes"]
    histories = [[("user", " ".join(words[(i + j) % len(words)] for j in range(20 + 60 * i)))] for i in range(k)]
    one_by_one, batched = [], []
    for step in range(steps + 1):
        answer = [" ".join(words[(i + j) % len(words)] for j in range(40 * (step + 1))) for i in range(k)]
        calls = [((answer[i],), {"role": "assistant", "conversation": histories[i]}) for i in range(k)]
        started = time.perf_counter()
        for args, kwargs in calls:
            alone.check_text(*args, **kwargs)
        middle = time.perf_counter()
        outcomes = together.check_text_batch(calls)
        ended = time.perf_counter()
        if any(isinstance(o, Exception) for o in outcomes):
            raise RuntimeError(f"a batched check failed: {outcomes}")
        if step:
            one_by_one.append(middle - started)
            batched.append(ended - middle)
    a, b = statistics.median(one_by_one), statistics.median(batched)
    return {"model": "tiny", "batcher": True, "checks": k, "new_words": 40, "one_by_one_ms": round(a * 1000, 2),
            "batched_ms": round(b * 1000, 2), "batched_vs_one_by_one": round(b / a, 3)}


def main(argv: list[str] | None = None) -> int:
    import torch

    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (the guard processes use 1)")
    parser.add_argument("--sizes", default="tiny,1b-2layers")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--models", type=Path, default=REPO / ".cache" / "tiny-models")
    parser.add_argument("--no-batcher", action="store_true",
                        help="only the best case, not the mixed sizes nor the batcher as built")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    rows = []
    for size in args.sizes.split(","):
        llm = model(size, args.models)
        for tail, past in SHAPES[size]:
            for k in CHECKS[1:]:
                rows.append({"model": size, **measure(llm, tail, past, k, args.repeats)})
    if not args.no_batcher:
        rows.extend(measure_mixed(args.models, shapes, args.repeats) for shapes in MIXED)
        rows.extend(measure_batcher(args.models, k, args.repeats) for k in CHECKS[1:])
    if args.json:
        print(json.dumps({"threads": args.threads, "rows": rows}, indent=2))
    else:
        for row in rows:
            print(row)
    return 0


if __name__ == "__main__":
    sys.exit(main())

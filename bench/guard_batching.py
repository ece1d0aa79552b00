"""Would batching Llama Guard checks from several conversations into one forward pass pay on this machine?

    python bench/guard_batching.py [--json] [--threads 1] [--sizes tiny,1b-2layers]

The best case for batching: k checks of the same length (`tail` new tokens) on cached conversations of the same
length (`past` tokens), the batch's cache built in advance (merging k conversations' caches, which a real batcher
must do, costs nothing here). Times one forward pass of the k checks together against the k passes one after the
other, with the guard processes' torch threads (1). Models: the tiny Llama Guard the benchmarks use, and a randomly
initialised Llama of Llama Guard 3 1B's width (hidden 2048, 2 of its 16 layers) to see what real-width matrices do.
If the batched pass is not clearly faster here, cross-request batching cannot make the server faster on this CPU
(docs/PERFORMANCE.md, "Cross-request batching").
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


def main(argv: list[str] | None = None) -> int:
    import torch

    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (the guard processes use 1)")
    parser.add_argument("--sizes", default="tiny,1b-2layers")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--models", type=Path, default=REPO / ".cache" / "tiny-models")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    rows = []
    for size in args.sizes.split(","):
        llm = model(size, args.models)
        for tail, past in SHAPES[size]:
            for k in CHECKS[1:]:
                rows.append({"model": size, **measure(llm, tail, past, k, args.repeats)})
    if args.json:
        print(json.dumps({"threads": args.threads, "rows": rows}, indent=2))
    else:
        for row in rows:
            print(row)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Cost of one Llama Guard verdict on the tiny trained model: one forward pass (with and without the prompt-head
KV cache) versus generating the verdict text (the peers' way). Prints timings and ratios; `--json` for one object.

    .venv/bin/python bench/llama_guard_verdict.py [--repeats 20] [--threads 1] [--json]

Torch threads default to 1: on a shared 2-core machine two intra-op threads made these tiny forwards ~30x slower
(the threads wait on each other), which would measure contention rather than the method.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()

    import torch

    torch.set_num_threads(args.threads)

    from assistant.dev.tiny_guards.builder import TINY_GUARDS_VERSION, build_tiny_guards
    from guards.llama_guard.guard import LlamaGuard
    from guards.llama_guard.prompt import Turn

    models = build_tiny_guards(REPO / ".cache" / "tiny-models" / TINY_GUARDS_VERSION)
    guard = LlamaGuard.load(models["llama-guard"], dtype="float32")
    cases = {
        "safe": [Turn("user", "How do I grow tomatoes in a small garden? " * 3)],
        "unsafe": [Turn("user", "Tell me about zyxtrigger please, in detail. " * 3)],
    }
    modes = {
        "forward+prefix": lambda t: (setattr(guard, "use_prefix_cache", True), guard.check(t, mode="forward"))[1],
        "forward": lambda t: (setattr(guard, "use_prefix_cache", False), guard.check(t, mode="forward"))[1],
        "generate": lambda t: guard.check(t, mode="generate"),
    }
    import warnings

    warnings.filterwarnings("ignore")
    results: dict[str, dict[str, float]] = {}
    for case, turns in cases.items():
        verdicts = set()
        for name, run in modes.items():
            run(turns)  # warm-up (and builds the prefix cache once)
            times = []
            for _ in range(args.repeats):
                start = time.perf_counter()
                result = run(turns)
                times.append((time.perf_counter() - start) * 1000)
            verdicts.add((result.unsafe, result.categories))
            results.setdefault(case, {})[name] = statistics.median(times)
        results[case]["modes_agree"] = float(len(verdicts) == 1)
    out = {
        "model": f"tiny llama-guard (2 layers, hidden 64, 128,256 vocab), CPU, {args.threads} thread(s)",
        "prompt_tokens": len(guard.prompt_ids(cases["safe"])),
        "median_ms": results,
        "ratios": {
            case: {
                "forward_prefix_vs_generate": r["forward+prefix"] / r["generate"],
                "forward_vs_generate": r["forward"] / r["generate"],
                "forward_prefix_vs_forward": r["forward+prefix"] / r["forward"],
            }
            for case, r in results.items()
        },
    }
    if args.json:
        print(json.dumps(out))
        return
    print(f"{out['model']}; prompt {out['prompt_tokens']} tokens; median of {args.repeats}")
    for case, r in results.items():
        print(
            f"{case:7s} forward+prefix {r['forward+prefix']:7.2f} ms  forward {r['forward']:7.2f} ms  "
            f"generate {r['generate']:7.2f} ms  agree={bool(r['modes_agree'])}"
        )
        ratio = out["ratios"][case]
        print(
            f"        ratios: forward+prefix/generate {ratio['forward_prefix_vs_generate']:.2f}  "
            f"forward/generate {ratio['forward_vs_generate']:.2f}  "
            f"forward+prefix/forward {ratio['forward_prefix_vs_forward']:.2f}"
        )


if __name__ == "__main__":
    main()

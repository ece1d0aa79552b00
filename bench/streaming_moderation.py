"""Cost of streaming moderation on one answer: the old scheme (each check reads a chunk plus a look-back) against the
current one (each check reads the whole answer so far, the last check the whole answer), on the same Llama Guard.

    python bench/streaming_moderation.py [--guard DIR] [--chars 3000] [--chunk 400]

Prints, per scheme: checks, prompt tokens, tokens actually prefilled (not reused from the guard's cache of its last
check) and wall time. With the cache, the current scheme prefills about the answer once (linear); without it
(`--no-cache` row) every check prefills everything before it (quadratic).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

REQUEST = "Tell me about the history of the city and its gardens."
SENTENCE = "The old town grew around the river, and its gardens were planted by the guilds in spring. "


def chunk_ends(answer: str, chunk: int) -> list[int]:
    """Where the agent's checks end: every `chunk` characters, at a word boundary (as answer_stream does)."""
    ends, start = [], 0
    while len(answer) - start >= chunk:
        end = start + chunk
        space = answer.rfind(" ", start, end)
        end = space + 1 if space >= start else end
        ends.append(end)
        start = end
    return ends


def run(guard: object, texts: list[str]) -> tuple[int, int, int, float]:
    prompt = prefilled = 0
    started = time.perf_counter()
    for text in texts:
        result = guard.check_text(text, role="assistant", conversation=[("user", REQUEST)])  # type: ignore[attr-defined]
        prompt += result.prompt_tokens
        prefilled += result.prompt_tokens - result.cached_tokens
    return len(texts), prompt, prefilled, time.perf_counter() - started


def main() -> None:
    from guards.llama_guard.guard import LlamaGuard

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--guard", type=Path, default=Path(".cache/tiny-models/llama-guard"))
    parser.add_argument("--chars", type=int, default=3000)
    parser.add_argument("--chunk", type=int, default=400)
    parser.add_argument("--lookback", type=int, default=200)
    args = parser.parse_args()
    answer = (SENTENCE * (args.chars // len(SENTENCE) + 1))[: args.chars]
    ends = chunk_ends(answer, args.chunk)
    old, start = [], 0
    for end in [*ends, len(answer)]:
        if end > start:
            old.append(answer[max(0, start - args.lookback) : end])
        start = end
    new = [answer[:end] for end in ends] + [answer]
    print(f"answer: {len(answer)} characters, checks every {args.chunk}")
    print(f"{'scheme':<34}{'checks':>7}{'prompt tok':>12}{'prefilled':>11}{'wall s':>9}")
    for name, texts, cache in (("chunk + look-back (before)", old, True),
                               ("whole answer so far (now)", new, True),
                               ("whole answer so far, no cache", new, False)):
        guard = LlamaGuard.load(args.guard, device="cpu", dtype="float32", use_prefix_cache=cache)
        guard.check_text("warm up", role="user")
        checks, prompt, prefilled, wall = run(guard, texts)
        print(f"{name:<34}{checks:>7}{prompt:>12}{prefilled:>11}{wall:>9.2f}")


if __name__ == "__main__":
    main()

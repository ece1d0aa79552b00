"""What constrained decoding (structured output, forced tool calls) costs per token, on the tiny Llama 3.1 model.

Two measurements:
1. End to end through `TransformersBackend`: decode time per generated token with and without a JSON Schema
   constraint (the random-weight model writes one long JSON string under the constraint, so both runs generate the
   same number of tokens), as a ratio.
2. The grammar libraries alone, over Llama 3.1's 128,256-token vocabulary: the cost per token of computing the mask
   and applying it to a logits row, and of the mask alone (the apply step is the bench's own for two of them),
   teacher-forced over one valid JSON document; plus each library's one-off setup (tokenizer table) and per-schema
   compile time. xgrammar (the one the backend uses), lm-format-enforcer and outlines-core, where installed.

Run: `python bench/structured_output.py [--tokens 64] [--repeats 5]` (CPU; about a minute).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from model.backends.base import GenerationParams
from model.backends.transformers_backend import TransformersBackend
from model.constraint import json_constraint

VOCAB = 128_256
PROMPT = [128000, 128006, 882, 128007, 271, 9906, 128009, 128006, 78191, 128007, 271]  # user: "Hello", assistant:
LONG_STRING = {"type": "object", "properties": {"text": {"type": "string"}}, "required": ["text"],
               "additionalProperties": False}
SCHEMA = {"type": "object", "additionalProperties": False, "required": ["city", "temp", "ok", "tags"],
          "properties": {"city": {"type": "string"}, "temp": {"type": "integer"}, "ok": {"type": "boolean"},
                         "tags": {"type": "array", "items": {"type": "string"}}}}
DOCUMENT = {"city": "Paris and the surrounding region of France", "temp": 21, "ok": True,
            "tags": ["a", "bb", "weather report", "more words in a longer tag"]}


async def decode_per_token(backend: TransformersBackend, params: GenerationParams) -> float:
    async for _ in backend.stream(PROMPT, params):
        pass
    stats = backend.stats
    assert stats.last_total_s is not None and stats.last_prefill_s is not None
    return (stats.last_total_s - stats.last_prefill_s) / max(1, stats.last_generated_tokens - 1)


def end_to_end(tokens: int, repeats: int) -> None:
    backend = TransformersBackend("tiny:llama-3.1-instruct", device="cpu", dtype="float32", reuse_cache=False)
    free = GenerationParams(max_new_tokens=tokens)
    bound = GenerationParams(max_new_tokens=tokens, constraint=json_constraint(LONG_STRING))
    for params in (free, bound):  # warm-up: loading, the grammar's tokenizer table and compile
        asyncio.run(decode_per_token(backend, params))
    times: dict[str, list[float]] = {"free": [], "constrained": []}
    for _ in range(repeats):
        times["free"].append(asyncio.run(decode_per_token(backend, free)))
        times["constrained"].append(asyncio.run(decode_per_token(backend, bound)))
    free_ms, bound_ms = (statistics.median(times[k]) * 1000 for k in ("free", "constrained"))
    print(f"end to end, tiny model, {tokens} tokens, median of {repeats}:")
    print(f"  unconstrained  {free_ms:7.2f} ms/token")
    print(f"  constrained    {bound_ms:7.2f} ms/token   ratio {bound_ms / free_ms:.2f}x   "
          f"(+{bound_ms - free_ms:.2f} ms/token)")


def timed(what: Callable[[], Any]) -> tuple[Any, float]:
    started = time.perf_counter()
    return what(), time.perf_counter() - started


class Clock:
    """Seconds spent computing masks (the library's own work), apart from applying them to the logits."""

    def __init__(self) -> None:
        self.mask_s = 0.0

    def mask(self, work: Callable[[], Any]) -> Any:
        started = time.perf_counter()
        try:
            return work()
        finally:
            self.mask_s += time.perf_counter() - started


def per_token(step: Callable[[int], None], ids: list[int], repeats: int, reset: Callable[[], None],
              clock: Clock) -> tuple[float, float]:
    """Median ms per token: everything (mask + apply + advance), and the mask alone."""
    samples, masks = [], []
    for _ in range(repeats):
        reset()
        clock.mask_s = 0.0
        started = time.perf_counter()
        for token in ids:
            step(token)
        samples.append((time.perf_counter() - started) / len(ids))
        masks.append(clock.mask_s / len(ids))
    return statistics.median(samples) * 1000, statistics.median(masks) * 1000


def bench_xgrammar(tokenizer: Any, ids: list[int], repeats: int) -> tuple[float, float, tuple[float, float]]:
    import torch
    import xgrammar as xgr

    info, setup = timed(lambda: xgr.TokenizerInfo.from_huggingface(tokenizer, vocab_size=VOCAB,
                                                                   stop_token_ids=[128009]))
    compiler = xgr.GrammarCompiler(info, max_threads=2, cache_enabled=False)
    grammar, compile_s = timed(lambda: compiler.compile_json_schema(json.dumps(SCHEMA), any_whitespace=False))
    bitmask = xgr.allocate_token_bitmask(1, VOCAB)
    logits = torch.randn(1, VOCAB)
    state: dict[str, Any] = {}
    clock = Clock()

    def reset() -> None:
        state["m"] = xgr.GrammarMatcher(grammar)

    def step(token: int) -> None:
        clock.mask(lambda: state["m"].fill_next_token_bitmask(bitmask))
        row = logits.clone()
        xgr.apply_token_bitmask_inplace(row, bitmask)
        if not state["m"].accept_token(token):
            raise AssertionError("xgrammar refused a token of the valid document")

    return setup, compile_s, per_token(step, ids, repeats, reset, clock)


def bench_lmfe(tokenizer: Any, ids: list[int], repeats: int) -> tuple[float, float, tuple[float, float]]:
    import torch
    from lmformatenforcer import JsonSchemaParser, TokenEnforcer, TokenEnforcerTokenizerData

    def table() -> Any:  # its transformers integration does not import with transformers 5: built as it does
        zero = tokenizer.encode("0", add_special_tokens=False)[-1]
        regular = []
        for token in range(128_000):
            after_zero, alone = tokenizer.decode([zero, token])[1:], tokenizer.decode([token])
            regular.append((token, after_zero, len(after_zero) > len(alone)))
        return TokenEnforcerTokenizerData(regular, lambda t: tokenizer.decode(t).rstrip("\ufffd"), [128009], False,
                                          VOCAB)

    data, setup = timed(table)
    _, compile_s = timed(lambda: JsonSchemaParser(SCHEMA))
    logits = torch.randn(VOCAB)
    state: dict[str, Any] = {}
    clock = Clock()

    def reset() -> None:
        state["e"], state["seq"] = TokenEnforcer(data, JsonSchemaParser(SCHEMA)), list(PROMPT)

    def step(token: int) -> None:
        allowed = clock.mask(lambda: state["e"].get_allowed_tokens(state["seq"]))
        mask = torch.full((VOCAB,), float("-inf"))
        mask[torch.tensor(list(allowed.allowed_tokens), dtype=torch.long)] = 0
        _ = logits + mask
        state["seq"].append(token)

    return setup, compile_s, per_token(step, ids, repeats, reset, clock)


def bench_outlines(ids: list[int], repeats: int) -> tuple[float, float, tuple[float, float]]:
    import torch
    from outlines_core import Guide, Index, Vocabulary
    from outlines_core.json_schema import build_regex_from_schema

    from model.tokenizer import get_tokenizer

    tiktoken = get_tokenizer(None)

    def vocabulary() -> Any:
        table: dict[bytes, list[int]] = {}
        for token in range(128_000):
            table.setdefault(tiktoken.decode_bytes([token]), []).append(token)
        return Vocabulary(128009, table)

    vocab, setup = timed(vocabulary)
    index, compile_s = timed(lambda: Index(build_regex_from_schema(json.dumps(SCHEMA), None), vocab))
    mask = torch.zeros((VOCAB + 31) // 32, dtype=torch.int32)
    logits = torch.randn(VOCAB)
    shifts = torch.arange(32, dtype=torch.int32)
    state: dict[str, Any] = {}
    clock = Clock()

    def reset() -> None:
        state["g"] = Guide(index)

    def step(token: int) -> None:
        clock.mask(lambda: state["g"].write_mask_into(mask.data_ptr(), mask.numel(), mask.element_size()))
        allowed = ((mask.unsqueeze(1) >> shifts) & 1).bool().flatten()[:VOCAB]
        _ = logits.masked_fill(~allowed, float("-inf"))
        state["g"].advance(token)

    return setup, compile_s, per_token(step, ids, repeats, reset, clock)


def libraries(repeats: int) -> None:
    from transformers import AutoTokenizer

    from model.tiny import default_tiny_dir, ensure_tiny_main

    tokenizer = AutoTokenizer.from_pretrained(str(ensure_tiny_main(default_tiny_dir())))
    ids = tokenizer.encode(json.dumps(DOCUMENT, separators=(", ", ": ")), add_special_tokens=False)
    print(f"libraries alone: mask + apply per token over {VOCAB:,} logits, a {len(ids)}-token JSON document, "
          f"median of {repeats}:")
    runs: list[tuple[str, Callable[[], tuple[float, float, tuple[float, float]]]]] = [
        ("xgrammar", lambda: bench_xgrammar(tokenizer, ids, repeats)),
        ("lm-format-enforcer", lambda: bench_lmfe(tokenizer, ids, repeats)),
        ("outlines-core", lambda: bench_outlines(ids, repeats)),
    ]
    for name, run in runs:
        try:
            setup, compile_s, (total_ms, mask_ms) = run()
        except ImportError as exc:
            print(f"  {name:20s} not installed ({exc.name})")
            continue
        print(f"  {name:20s} {total_ms:8.3f} ms/token (mask alone {mask_ms:7.3f})   setup {setup:5.2f} s   "
              f"schema compile {compile_s * 1000:7.1f} ms")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tokens", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    end_to_end(args.tokens, args.repeats)
    libraries(args.repeats)


if __name__ == "__main__":
    main()

"""The models alone at their real sizes on one GPU, and each mode's turn schedule computed from their times.

    python bench/gpu_models.py [--json] [--repeats 5]     # a GPU: Llama 3.1 8B, Llama Guard 3 8B / 1B, Prompt Guard
    python bench/gpu_models.py --tiny --json              # the same code on small configs, CPU (the test)

Self-contained on purpose (torch and transformers only, nothing of this project: a lent GPU machine carries no
more than those, an older transformers, and 64 MiB of our files). Randomly initialised models of the real
configurations in bf16 (timing does not depend on the weights): the main model's prefill and decode times, each
guard's check times at the benchmark scenario's sizes (bench/scenario.py: tool results of about 2,400, 1,500 and
3,300 tokens, answers of about 210 tokens), and the time of the checks running beside the main model (each on its
own CUDA stream and thread, as a guard server beside the model server shares the GPU). From those times the turn
schedule of each mode, summed over the scenario's three answered turns (two tools, one tool, none):

- `unguarded`: prefill, tool calls, tool results prefilled, the answer decoded.
- `ours`: input checks beside the main model's speculative prefill; each tool result's Prompt Guard windows
  (512 tokens, stride 256, batches of 16) and Llama Guard (one forward pass, its prefix cached) beside the main
  model's prefill of the result; the answer checked in chunks (24 characters first, then 200) by one Llama Guard
  forward each, beside the decoding; the last chunk's check after the last token.
- `ogx`: input guardrails (Llama Guard generating its verdict, Prompt Guard) before the model; no tool-result
  guard; the answer held and checked on the accumulated text every 200 characters (a generated verdict, the provider's
  prefix cache reusing what it read), one check at a time, beside the decoding.
- `llamafirewall`: Prompt Guard (first 512 tokens) then Llama Guard (generated verdict) one after the other on the
  input and on every tool result before the model goes on; the complete answer scanned, then shown.

Prints (`--json`: one object) `ttft_checked_vs_unguarded`, `turn_vs_unguarded`, `ttft_checked_vs_ogx`, `turn_vs_ogx`,
`ttft_checked_vs_llamafirewall`, `turn_vs_llamafirewall`, the same with `_lg1b` for Llama Guard 3 1B, every
measured time, and the device.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import statistics
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

CHARS_PER_TOKEN = 4.3  # English text in Llama 3's tokenizer


@dataclass(frozen=True)
class Plan:
    """Token counts of the scenario (bench/scenario.py at its default size) and the schedule's settings."""

    system: int = 450  # system prompt with the tool's definition
    user: int = 16
    turns: tuple[tuple[int, ...], ...] = ((2437, 1500), (3321,), ())  # tool results per answered turn
    tool_call: int = 20  # tokens of one tool call
    answer: int = 210  # about 160 words
    first_chunk_chars: int = 24
    chunk_chars: int = 200  # ours' chunks and OGX's GUARDRAIL_BATCH_CHARS
    verdict_tokens: int = 2  # a generated verdict: `safe` and the end of turn
    window: int = 512
    stride: int = 256
    pg_batch: int = 16

    def tokens(self, chars: int) -> int:
        return max(1, round(chars / CHARS_PER_TOKEN))


TINY_PLAN = Plan(system=40, user=8, turns=((120, 80), (150,), ()), tool_call=6, answer=40, window=64, stride=32,
                 pg_batch=4)


def configs(tiny: bool) -> dict[str, Any]:
    """Llama 3.1 8B (and Llama Guard 3 8B, the same architecture), Llama Guard 3 1B (Llama 3.2 1B), Prompt Guard
    86M (mDeBERTa-v3-base with a 3-label head)."""
    from transformers import DebertaV2Config, LlamaConfig

    vocab = 512 if tiny else 128256

    def llama(hidden: int, inter: int, layers: int, heads: int, kv: int, tie: bool) -> Any:
        common = {"vocab_size": vocab, "hidden_size": hidden, "intermediate_size": inter,
                  "num_hidden_layers": layers, "num_attention_heads": heads, "num_key_value_heads": kv,
                  "max_position_embeddings": 131072, "rms_norm_eps": 1e-5, "rope_theta": 500000.0,
                  "tie_word_embeddings": tie, "bos_token_id": 128000 % vocab, "eos_token_id": 128009 % vocab}
        scaling = {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                   "original_max_position_embeddings": 8192}
        try:
            return LlamaConfig(**common, rope_scaling=scaling)
        except (TypeError, ValueError):  # an older transformers without Llama 3 rope scaling: same cost per token
            return LlamaConfig(**common)

    def deberta(hidden: int, layers: int, heads: int, inter: int) -> Any:
        return DebertaV2Config(vocab_size=512 if tiny else 251000, hidden_size=hidden, num_hidden_layers=layers,
                               num_attention_heads=heads, intermediate_size=inter, max_position_embeddings=512,
                               relative_attention=True, position_buckets=256, pos_att_type=["p2c", "c2p"],
                               max_relative_positions=-1, norm_rel_ebd="layer_norm", share_att_key=True,
                               type_vocab_size=0, num_labels=3)

    if tiny:
        return {"main": llama(64, 128, 2, 4, 2, False), "llama_guard_8b": llama(64, 128, 2, 4, 2, False),
                "llama_guard_1b": llama(32, 64, 2, 4, 2, True), "prompt_guard": deberta(32, 2, 4, 64)}
    return {"main": llama(4096, 14336, 32, 32, 8, False), "llama_guard_8b": llama(4096, 14336, 32, 32, 8, False),
            "llama_guard_1b": llama(2048, 8192, 16, 32, 8, True), "prompt_guard": deberta(768, 12, 12, 3072)}


class Bench:
    """Builds the models and times forward passes (CUDA-synchronised medians)."""

    def __init__(self, device: str, dtype: Any, repeats: int) -> None:
        import torch

        self.torch, self.device, self.dtype, self.repeats = torch, device, dtype, repeats
        self.cuda = device.startswith("cuda")
        self.times: dict[str, float] = {}

    def build(self, config: Any, kind: str) -> Any:
        from transformers import DebertaV2ForSequenceClassification, LlamaForCausalLM

        torch = self.torch
        cls = LlamaForCausalLM if kind == "llama" else DebertaV2ForSequenceClassification
        previous = torch.get_default_dtype()
        # Parameters made in bf16 on the device (no fp32 copy of 8B weights); a torch that takes only float32/64
        # here makes them in fp32, cast below.
        with contextlib.suppress(TypeError, ValueError):
            torch.set_default_dtype(self.dtype)
        try:
            with torch.device(self.device):
                model = cls(config)
        finally:
            torch.set_default_dtype(previous)
        return model.to(self.device, self.dtype).eval()

    def sync(self) -> None:
        if self.cuda:
            self.torch.cuda.synchronize()

    def ids(self, n: int, batch: int = 1, vocab: int = 500) -> Any:
        return self.torch.randint(0, vocab, (batch, n), device=self.device)  # any ids: the cost is the same

    def median(self, name: str, fn: Callable[[], object]) -> float:
        """Median wall time of `fn` (one warm-up call first), recorded under `name`."""
        with self.torch.inference_mode():
            fn()
            self.sync()
            samples = []
            for _ in range(self.repeats):
                started = time.perf_counter()
                fn()
                self.sync()
                samples.append(time.perf_counter() - started)
        self.times[name] = round(statistics.median(samples), 5)
        return self.times[name]

    def parallel(self, name: str, fns: list[Callable[[], object]]) -> float:
        """Median wall time of `fns` started together, each on a thread and a CUDA stream of its own."""
        torch = self.torch

        def once() -> None:
            streams = [torch.cuda.Stream() if self.cuda else None for _ in fns]
            errors: list[BaseException] = []

            def work(fn: Callable[[], object], stream: Any) -> None:
                try:
                    with torch.inference_mode():
                        if stream is None:
                            fn()
                        else:
                            with torch.cuda.stream(stream):
                                fn()
                            stream.synchronize()
                except BaseException as exc:  # re-raised below: a failed measurement is not a time
                    errors.append(exc)

            threads = [threading.Thread(target=work, args=(f, s)) for f, s in zip(fns, streams, strict=True)]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            if errors:
                raise errors[0]

        return self.median(name, once)


class Llama:
    """One causal LM: prefill on top of a cached context, decode steps, and verdict-style checks. Only the last
    position's logits are computed where transformers allows it (as vLLM and our Llama Guard do)."""

    def __init__(self, bench: Bench, model: Any) -> None:
        import inspect

        self.b, self.model = bench, model
        self._contexts: dict[int, Any] = {}
        names = inspect.signature(model.forward).parameters
        keep = next((n for n in ("logits_to_keep", "num_logits_to_keep") if n in names), None)
        self.last_only: dict[str, int] = {keep: 1} if keep else {}

    def context(self, length: int) -> Any:
        """A KV cache of `length` tokens (built once; a forward on top of it is cropped back afterwards)."""
        if length not in self._contexts:
            with self.b.torch.inference_mode():
                out = self.model(input_ids=self.b.ids(length), use_cache=True, **self.last_only)
            self._contexts[length] = out.past_key_values
        return self._contexts[length]

    def forward(self, new: int, past: int) -> Callable[[], object]:
        """One forward pass of `new` tokens after `past` cached ones (a prefill, or a one-pass Llama Guard check)."""
        ids = self.b.ids(new)

        def run() -> object:
            cache = self.context(past) if past else None
            out = self.model(input_ids=ids, past_key_values=cache, use_cache=past > 0, **self.last_only)
            restore(cache, past)
            return out.logits[:, -1].argmax()

        return run

    def decode(self, steps: int, past: int) -> Callable[[], object]:
        """`steps` one-token decode steps after `past` cached tokens."""
        ids = self.b.ids(1)

        def run() -> object:
            cache = self.context(past)
            for _ in range(steps):
                out = self.model(input_ids=ids, past_key_values=cache, use_cache=True, **self.last_only)
                if not hasattr(cache, "crop"):
                    cache = out.past_key_values
            restore(cache, past)
            return out.logits[:, -1].argmax()

        return run

    def generate_verdict(self, new: int, past: int, tokens: int) -> Callable[[], object]:
        """A generated verdict: the forward pass over the text, then `tokens` - 1 decode steps."""
        forward, decode = self.forward(new, past), self.decode(max(0, tokens - 1), past + new)

        def run() -> object:
            forward()
            return decode() if tokens > 1 else None

        return run


def restore(cache: Any, past: int) -> None:
    """Back to `past` tokens: a DynamicCache grows in place (legacy tuples do not). A negative `crop` removes that
    many tokens in every transformers version that has it (a positive one means a length in old versions only)."""
    if cache is not None and hasattr(cache, "crop"):
        extra = cache.get_seq_length() - past
        if extra > 0:
            cache.crop(-extra)


def prompt_guard(bench: Bench, model: Any, windows: int, length: int, batch: int) -> Callable[[], object]:
    """Prompt Guard over `windows` windows of `length` tokens, in batches of `batch`."""
    sizes = [min(batch, windows - i) for i in range(0, windows, batch)]
    inputs = [bench.ids(length, b) for b in sizes]

    def run() -> object:
        return [model(input_ids=x).logits.softmax(-1) for x in inputs]

    return run


def windows(tokens: int, plan: Plan) -> int:
    return 1 if tokens <= plan.window else 1 + math.ceil((tokens - plan.window) / plan.stride)


def schedules(bench: Bench, main: Llama, guard: Llama, pg: Any, plan: Plan, tag: str) -> dict[str, dict[str, float]]:
    """Each mode's time to first checked token and turn time, summed over the turns (seconds)."""
    b, first = bench, plan.tokens(plan.first_chunk_chars)
    chunk = plan.tokens(plan.chunk_chars)
    out = {m: {"ttft_checked_s": 0.0, "turn_s": 0.0} for m in ("unguarded", "ours", "ogx", "llamafirewall")}
    start = plan.system + plan.user
    # Input: the main model's prefill, and the guards on the user message (Llama Guard reads its own prompt head
    # and the message: about 250 tokens with the categories, the head cached).
    prefill_in = b.median("main_prefill_input", main.forward(start, 0))
    b.median(f"{tag}_check_input", guard.forward(plan.user + 8, 240))  # alone, for the record
    lg_in_gen = b.median(f"{tag}_verdict_input", guard.generate_verdict(plan.user + 8, 240, plan.verdict_tokens))
    pg_in = b.median("prompt_guard_input", prompt_guard(b, pg, 1, plan.user + 2, 1))
    ours_in = b.parallel(f"{tag}_ours_input_beside_prefill", [main.forward(start, 0), guard.forward(plan.user + 8, 240),
                                                             prompt_guard(b, pg, 1, plan.user + 2, 1)])
    ogx_in = b.parallel(f"{tag}_ogx_input_guardrails", [guard.generate_verdict(plan.user + 8, 240, plan.verdict_tokens),
                                                        prompt_guard(b, pg, 1, plan.user + 2, 1)])
    for results in plan.turns:
        ctx = start
        t = {"unguarded": prefill_in, "ours": ours_in, "ogx": ogx_in + prefill_in,
             "llamafirewall": pg_in + lg_in_gen + prefill_in}
        for size in results:
            call = b.median(f"main_decode_{plan.tool_call}_at_{ctx}", main.decode(plan.tool_call, ctx))
            ctx += plan.tool_call
            prefill = b.median(f"main_prefill_{size}_at_{ctx}", main.forward(size, ctx))
            n_win = windows(size, plan)
            beside = b.parallel(f"{tag}_ours_tool_result_{size}_beside_prefill", [
                main.forward(size, ctx), guard.forward(size, ctx),
                prompt_guard(b, pg, n_win, plan.window, plan.pg_batch)])
            lf_pg = b.median("prompt_guard_first_window", prompt_guard(b, pg, 1, plan.window, 1))
            lf_lg = b.median(f"{tag}_verdict_tool_result_{size}",
                             guard.generate_verdict(size, ctx, plan.verdict_tokens))
            t["unguarded"] += call + prefill
            t["ours"] += call + max(beside, prefill)  # the result is prefilled whatever the guards do (a floor
            # against timing noise, never in ours' favour)
            t["ogx"] += call + prefill  # no tool-result guard
            t["llamafirewall"] += call + lf_pg + lf_lg + prefill
            ctx += size
        step = b.median(f"main_decode_{chunk}_at_{ctx}", main.decode(chunk, ctx)) / chunk
        answer = step * plan.answer
        # Ours: the first chunk's check, then each later chunk checked beside the decoding of the next.
        check_first = b.median(f"{tag}_check_chunk_{first}_at_{ctx}", guard.forward(first + 6, ctx))
        chunk_beside = b.parallel(f"{tag}_ours_chunk_{chunk}_beside_decode", [
            main.decode(chunk, ctx), guard.forward(chunk + 6, ctx)])
        check_last = b.median(f"{tag}_check_chunk_{chunk}_at_{ctx}", guard.forward(chunk + 6, ctx))
        rest = plan.answer - first
        out["unguarded"]["ttft_checked_s"] += t["unguarded"] + step
        out["unguarded"]["turn_s"] += t["unguarded"] + answer
        out["ours"]["ttft_checked_s"] += t["ours"] + first * step + check_first
        beside_step = max(chunk_beside / chunk, step)  # the decoding slowed by the checks beside it
        out["ours"]["turn_s"] += t["ours"] + first * step + beside_step * rest + check_last
        # OGX: the accumulated text checked every 200 characters (generated verdicts, the prefix cache reused),
        # one check at a time beside the decoding; the events held until each check passes.
        ogx_check = b.median(f"{tag}_verdict_chunk_{chunk}_at_{ctx}", guard.generate_verdict(chunk + 6, ctx,
                                                                                            plan.verdict_tokens))
        ogx_beside = b.parallel(f"{tag}_ogx_chunk_{chunk}_beside_decode", [
            main.decode(chunk, ctx), guard.generate_verdict(chunk + 6, ctx, plan.verdict_tokens)])
        batches = math.ceil(plan.answer / chunk)
        out["ogx"]["ttft_checked_s"] += t["ogx"] + chunk * step + ogx_check
        ogx_chunk = max(ogx_beside, ogx_check, chunk * step)  # a chunk decoded while the previous one is checked
        out["ogx"]["turn_s"] += t["ogx"] + chunk * step + ogx_chunk * (batches - 1) + ogx_check
        # LlamaFirewall: the complete answer scanned (Prompt Guard does not scan the assistant), then shown.
        lf_answer = b.median(f"{tag}_verdict_answer_{plan.answer}_at_{ctx}",
                             guard.generate_verdict(plan.answer + 6, ctx, plan.verdict_tokens))
        done = t["llamafirewall"] + answer + lf_answer
        out["llamafirewall"]["ttft_checked_s"] += done
        out["llamafirewall"]["turn_s"] += done
    return {m: {k: round(v, 4) for k, v in f.items()} for m, f in out.items()}


def ratios(figures: dict[str, dict[str, float]], suffix: str) -> dict[str, float]:
    ours = figures["ours"]
    out = {}
    for peer in ("unguarded", "ogx", "llamafirewall"):
        out[f"ttft_checked_vs_{peer}{suffix}"] = round(ours["ttft_checked_s"] / figures[peer]["ttft_checked_s"], 3)
        out[f"turn_vs_{peer}{suffix}"] = round(ours["turn_s"] / figures[peer]["turn_s"], 3)
    return out


def run(tiny: bool, repeats: int) -> dict[str, Any]:
    import torch
    import transformers

    cuda = torch.cuda.is_available() and not tiny
    device = "cuda" if cuda else "cpu"
    dtype = torch.bfloat16 if cuda else torch.float32
    if not cuda and not tiny:
        raise SystemExit("no GPU: the real sizes need one (use --tiny for the small configs on the CPU)")
    started = time.perf_counter()
    bench, plan, conf = Bench(device, dtype, repeats), TINY_PLAN if tiny else Plan(), configs(tiny)
    main = Llama(bench, bench.build(conf["main"], "llama"))
    pg = bench.build(conf["prompt_guard"], "deberta")
    summary: dict[str, Any] = {}
    for name, suffix in (("llama_guard_8b", ""), ("llama_guard_1b", "_lg1b")):
        guard = Llama(bench, bench.build(conf[name], "llama"))
        figures = schedules(bench, main, guard, pg, plan, name)
        summary.update(ratios(figures, suffix))
        summary[f"schedules{suffix}"] = figures
        del guard
        if cuda:
            torch.cuda.empty_cache()
    summary["times_s"] = bench.times
    summary["plan"] = plan.__dict__
    summary["device"] = torch.cuda.get_device_name(0) if cuda else "cpu (--tiny)"
    summary["versions"] = {"torch": torch.__version__, "transformers": transformers.__version__}
    summary["tiny"] = tiny
    summary["elapsed_s"] = round(time.perf_counter() - started, 1)
    return summary


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--tiny", action="store_true", help="small configs on the CPU (a test that the script runs)")
    parser.add_argument("--repeats", type=int, default=None,
                        help="timed calls per measurement, after one warm-up (default 5; --tiny 1)")
    args = parser.parse_args(argv)
    summary = run(args.tiny, args.repeats or (1 if args.tiny else 5))
    if args.json:
        print(json.dumps(summary, indent=2))
    else:
        for key, value in summary.items():
            if not isinstance(value, dict):
                print(f"{key}: {value}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""What guard work beside it costs the main model's decoding: guards on a thread of the agent's process, or in
processes of their own (`models.*.process: true`, guards/runtime/process.py).

    python bench/guard_isolation.py [--json] [--steps 300] [--threads 1]

The tiny Llama 3.1 decodes `--steps` tokens after a 1,000-token prompt, alone, then while Llama Guard and Prompt
Guard check a long tool result in a loop - once on a thread of this process, once each in a process of its own (the
real `GuardProcess`) - every model with `--threads` torch threads per operation. Prints the decoding time of each
and the ratios to decoding alone (1.0 = the guards cost the decoding nothing).
"""

from __future__ import annotations

import argparse
import json
import sys
import threading
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

TEXT = " ".join(["The quarterly report lists revenue by region and the growth of each product line."] * 120)


def decode_s(model: Any, steps: int) -> float:
    import inspect

    import torch

    # transformers 5.x renamed `past_key_values` to `cache` (as guards/llama_guard/guard.py reads it)
    kw = "cache" if "cache" in inspect.signature(model.forward).parameters else "past_key_values"
    with torch.inference_mode():
        out = model(input_ids=torch.randint(0, 128000, (1, 1000)), use_cache=True, logits_to_keep=1)
        cache, token = getattr(out, kw), torch.tensor([[5]])
        started = time.perf_counter()
        for _ in range(steps):
            out = model(input_ids=token, use_cache=True, logits_to_keep=1, **{kw: cache})
            cache, token = getattr(out, kw), out.logits[:, -1].argmax(-1, keepdim=True)
        return time.perf_counter() - started


def guard_loop(llama: Any, prompt: Any, stop: threading.Event, done: list[int]) -> None:
    while not stop.is_set():
        prompt.score(TEXT, "injection")
        llama.check_text(TEXT + str(done[0]), role="agent")
        done[0] += 1


def run(steps: int, threads: int, models: Path, warm_s: float = 2.0) -> dict[str, Any]:
    import torch

    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        return _measure(steps, threads, models, warm_s)
    finally:
        torch.set_num_threads(previous)


def _measure(steps: int, threads: int, models: Path, warm_s: float) -> dict[str, Any]:
    from bench.harness import tiny_model_dirs
    from guards.llama_guard.guard import LlamaGuard, load_causal_lm
    from guards.prompt_guard.guard import PromptGuard
    from guards.runtime.process import GuardProcess
    from model.hf_import import quiet_hf_progress

    dirs = tiny_model_dirs(models)
    with quiet_hf_progress():
        main = load_causal_lm(str(dirs.main))
        local = (LlamaGuard(load_causal_lm(str(dirs.llama_guard))), PromptGuard.load(dirs.prompt_guard))
    kwargs = {"path": str(dirs.llama_guard), "device": "cpu", "dtype": "float32", "variant": "8b", "enabled": None,
              "excluded": (), "custom": [], "threshold": 0.5, "cached_conversations": 1, "source": ""}
    prompt_kwargs = {"source": str(dirs.prompt_guard)}
    remote = (
        GuardProcess("guards.llama_guard.runner:build_llama_guard", kwargs, name="Llama Guard", threads=threads),
        GuardProcess("guards.prompt_guard.guard:PromptGuard.load", prompt_kwargs, name="Prompt Guard", threads=threads),
    )
    for process in remote:
        process.start()
    decode_s(main, 20)  # warm-up
    figures: dict[str, Any] = {"steps": steps, "threads": threads, "alone_s": round(decode_s(main, steps), 3)}
    for name, (llama, prompt) in (("guard_thread", local), ("guard_process", remote)):
        stop, done = threading.Event(), [0]
        workers = [threading.Thread(target=guard_loop, args=(llama, prompt, stop, done))]
        workers[0].start()
        time.sleep(warm_s)  # the guards are busy before the decoding starts
        figures[f"with_{name}_s"] = round(decode_s(main, steps), 3)
        stop.set()
        workers[0].join()
        figures[f"{name}_checks"] = done[0]
        figures[f"decode_with_{name}_vs_alone"] = round(figures[f"with_{name}_s"] / figures["alone_s"], 4)
    for process in remote:
        process.close()
    return figures


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--threads", type=int, default=1, help="torch threads per operation, every model alike")
    parser.add_argument("--models", default=str(REPO / ".cache" / "tiny-models"))
    args = parser.parse_args(argv)
    figures = run(args.steps, args.threads, Path(args.models))
    if args.json:
        print(json.dumps(figures))
    else:
        for key, value in figures.items():
            print(f"{key:>36}: {value}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""A transformers backend whose completions are fixed in advance but still computed by the real model.

A random-weight tiny model cannot be made to call tools, so the benchmark teacher-forces it: each call of `stream`
takes the completion of the turn's script for its step (step k of a turn is the call whose prompt holds k assistant
messages after the last user message, so a generation the agent started speculatively and discarded does not shift
the script), and the decoding loop feeds the model that completion's tokens one at a time instead of its own argmax.
Each step is still a real forward pass over the real KV cache (same prefill of the prompt suffix, same one-token
decode steps, same cache reuse and invalidation as `TransformersBackend`), so the prefill and decode costs are those
of generating that text; only the choice of the next token is scripted.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from model.backends.base import GenerationParams
from model.backends.errors import BackendError
from model.backends.transformers_backend import TransformersBackend, _IncrementalDecoder, _output_cache

STOPS = ("<|eot_id|>", "<|eom_id|>")


@dataclass
class CallRecord:
    """What one model call cost (seconds) and processed (tokens)."""

    prompt_tokens: int
    prefill_tokens: int
    generated_tokens: int
    prefill_s: float
    total_s: float
    cancelled: bool


def completion_ids(completion: str, tokenizer: object) -> list[int]:
    """Ids of a completion exactly as the prompt encoder re-encodes it (`raw_segments`), plus the stop token."""
    from model.prompt_segments import encode_segments, raw_segments

    stop = next((s for s in STOPS if completion.endswith(s)), None)
    if stop is None:
        raise ValueError(f"a forced completion must end with a stop token ({', '.join(STOPS)}): {completion[-40:]!r}")
    body = completion[: -len(stop)]
    ids = encode_segments(list(raw_segments(body)), tokenizer, merge_text=False)  # type: ignore[arg-type]
    return [*ids, tokenizer.special_id(stop)]  # type: ignore[attr-defined]


class ForcedBackend(TransformersBackend):
    """`TransformersBackend` with teacher-forced completions (see the module docstring)."""

    def __init__(self, source: str, *, reuse_cache: bool = True, context_window: int = 8192) -> None:
        super().__init__(source, dtype="float32", device="cpu", context_window=context_window, reuse_cache=reuse_cache)
        self._script: list[list[int]] = []
        self._headers: dict[str, list[int]] = {}
        self._script_lock = threading.Lock()
        self.calls: list[CallRecord] = []

    def set_script(self, completions: Sequence[str]) -> None:
        """The completions of the coming turn's model calls, one per step (replaces the previous turn's)."""
        from model.tokenizer import get_tokenizer

        tokenizer = get_tokenizer(self.model_dir)
        header = (tokenizer.special_id("<|start_header_id|>"), tokenizer.special_id("<|end_header_id|>"))
        roles = {name: tokenizer.encode(name) for name in ("user", "assistant")}
        with self._script_lock:
            self._script = [completion_ids(c, tokenizer) for c in completions]
            self._headers = {name: [header[0], *ids, header[1]] for name, ids in roles.items()}

    def _forced_for(self, prompt_ids: list[int]) -> list[int]:
        """The completion for this prompt's step of the turn."""
        with self._script_lock:
            user, assistant = self._headers["user"], self._headers["assistant"]
            last_user = max((i for i in range(len(prompt_ids)) if prompt_ids[i : i + len(user)] == user), default=0)
            tail = prompt_ids[last_user:]
            step = (
                sum(tail[i : i + len(assistant)] == assistant for i in range(len(tail))) - 1
            )  # minus the prompt's own
            if not 0 <= step < len(self._script):
                raise BackendError(f"forced backend: the scenario has no completion for step {step} of this turn")
            return self._script[step]

    def _generate_locked(
        self, prompt_ids: list[int], params: GenerationParams, put: Callable[[object], None], cancel: threading.Event
    ) -> None:
        import torch

        forced = self._forced_for(prompt_ids)
        loaded = self.load()
        model = loaded.model
        device = model.get_input_embeddings().weight.device
        started = time.perf_counter()
        cache, reused = self._take_cache(prompt_ids)
        covered = list(prompt_ids)
        decoder = _IncrementalDecoder(loaded.tokenizer)
        generated: list[int] = []
        with torch.inference_mode():
            inputs = torch.tensor([prompt_ids[reused:]], device=device)
            out = model(input_ids=inputs, use_cache=True, logits_to_keep=1, **{loaded.cache_arg: cache})
            cache = _output_cache(out)
            prefill_s = time.perf_counter() - started
            for index, token in enumerate(forced):
                _ = out.logits[0, -1].argmax()  # what a greedy decoder reads (the forced token wins regardless)
                generated.append(token)
                last = index == len(forced) - 1
                delta = decoder.push(token, final=last)
                if delta:
                    put(delta)
                if last or cancel.is_set():
                    break
                out = model(
                    input_ids=torch.tensor([[token]], device=device), use_cache=True, logits_to_keep=1,
                    **{loaded.cache_arg: cache},
                )  # fmt: skip
                covered.append(token)
        # Kept after a cancel too (a discarded speculative generation): the cache holds exactly `covered`, and
        # is only ever reused for a prompt that starts with the same ids.
        if self.reuse_cache:
            self._cache, self._cache_ids = cache, tuple(covered)
        self.stats.record(prompt=len(prompt_ids), cached=reused, generated=len(generated))
        self.stats.last_generated_ids = tuple(generated)
        self.calls.append(
            CallRecord(
                len(prompt_ids),
                len(prompt_ids) - reused,
                len(generated),
                prefill_s,
                time.perf_counter() - started,
                cancel.is_set(),
            )
        )

"""A transformers backend whose completions are fixed in advance but still computed by the real model.

A random-weight tiny model cannot be made to call tools, so the benchmark teacher-forces it: each call of `stream`
takes the completion of the turn's script for its step (step k of a turn is the call whose prompt holds k assistant
messages after the last user message, so a generation the agent started speculatively and discarded does not shift
the script), and the decoding loop feeds the model that completion's tokens one at a time instead of its own argmax.
Several conversations may run at once (the concurrency figure): `set_scenario` keys each turn's script by the
text of its user message, and each call reads the last user message of its own prompt to pick the script.
It is `TransformersBackend` with one method replaced, `token_chooser`: the same loop runs (same prefill of the prompt
suffix, same one-token decode steps, same cache reuse and invalidation), so the prefill and decode costs are those of
generating that text; only the choice of the next token is scripted.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from model.backends.base import GenerationParams
from model.backends.decoding import TokenChooser
from model.backends.errors import BackendError
from model.backends.transformers_backend import TransformersBackend

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
    started_at: float = 0.0  # time.perf_counter() when the call began generating
    first_token_at: float | None = None  # ... and when its first delta was produced (what a peer streams at once)


def completion_ids(completion: str, tokenizer: object) -> list[int]:
    """Ids of a completion exactly as the prompt encoder re-encodes it (`raw_segments`), plus the stop token."""
    from model.completion import trusted_spans
    from model.prompt_segments import encode_segments, raw_segments

    stop = next((s for s in STOPS if completion.endswith(s)), None)
    if stop is None:
        raise ValueError(f"a forced completion must end with a stop token ({', '.join(STOPS)}): {completion[-40:]!r}")
    body = completion[: -len(stop)]
    # The script stands in for the model: its special-token strings are tokens generated as ids.
    ids = encode_segments(list(raw_segments(body, trusted_spans(body))), tokenizer, merge_text=False)  # type: ignore[arg-type]
    return [*ids, tokenizer.special_id(stop)]  # type: ignore[attr-defined]


class ForcedBackend(TransformersBackend):
    """`TransformersBackend` with teacher-forced completions (see the module docstring)."""

    def __init__(self, source: str, *, reuse_cache: bool = True, context_window: int = 8192) -> None:
        super().__init__(source, dtype="float32", device="cpu", context_window=context_window, reuse_cache=reuse_cache)
        self._script: list[list[int]] = []
        self._scripts: dict[str, list[list[int]]] = {}  # by the user message's text (concurrent conversations)
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

    def set_scenario(self, turns: Sequence[tuple[str, Sequence[str]]]) -> None:
        """Scripts for (user message, completions) pairs: each call finds its turn by its prompt's last user message,
        so conversations in different turns can share this backend."""
        from model.tokenizer import get_tokenizer

        self.set_script([])
        tokenizer = get_tokenizer(self.model_dir)
        scripts = {user.strip(): [completion_ids(c, tokenizer) for c in completions] for user, completions in turns}
        with self._script_lock:
            self._scripts = scripts

    def _forced_for(self, prompt_ids: list[int]) -> list[int]:
        """The completion for this prompt's step of the turn."""
        with self._script_lock:
            user, assistant = self._headers["user"], self._headers["assistant"]
            last_user = max((i for i in range(len(prompt_ids)) if prompt_ids[i : i + len(user)] == user), default=0)
            tail = prompt_ids[last_user:]
            step = (
                sum(tail[i : i + len(assistant)] == assistant for i in range(len(tail))) - 1
            )  # minus the prompt's own
            script = self._script
            if self._scripts:
                script = self._scripts.get(self._user_text(tail[len(user) :]), script)
            if not 0 <= step < len(script):
                raise BackendError(f"forced backend: the scenario has no completion for step {step} of this turn")
            return script[step]

    def _user_text(self, ids: list[int]) -> str:
        from model.tokenizer import get_tokenizer

        tokenizer = get_tokenizer(self.model_dir)
        end = tokenizer.special_id("<|eot_id|>")
        body = ids[: ids.index(end)] if end in ids else ids
        return str(tokenizer.decode(body)).strip()

    def token_chooser(self, prompt_ids: list[int], params: GenerationParams) -> TokenChooser:
        """The scripted completion's tokens in order, read off the real logits like a greedy decoder would."""
        forced = iter(self._forced_for(prompt_ids))

        def choose(logits: Any) -> int:
            _ = logits.argmax()  # what a greedy decoder reads (the forced token wins regardless)
            return next(forced)

        return choose

    def _generate_locked(
        self, prompt_ids: list[int], params: GenerationParams, put: Callable[[object], None], cancel: threading.Event
    ) -> None:
        # The whole forced completion, whatever the policy's max_new_tokens (it ends with its own stop token).
        forced = GenerationParams(max_new_tokens=max(params.max_new_tokens, len(self._forced_for(prompt_ids))))
        started = time.perf_counter()
        first: list[float] = []

        def timed_put(item: object) -> None:
            if not first:
                first.append(time.perf_counter())
            put(item)

        super()._generate_locked(prompt_ids, forced, timed_put, cancel)
        stats = self.stats
        self.calls.append(CallRecord(
            stats.last_prompt_tokens, stats.last_prefill_tokens, stats.last_generated_tokens,
            stats.last_prefill_s or 0.0, stats.last_total_s or 0.0, stats.last_cancelled, started,
            first[0] if first else None,
        ))

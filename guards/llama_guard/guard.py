"""Llama Guard scoring (Llama Guard 3, and Llama Guard 4 with Llama 4's tokenizer): one forward pass per verdict,
fail-closed.

The score is P(first generated token == `unsafe`) (the model card's method), read from the last position's logits
only (`logits_to_keep=1`: the full vocabulary head over every prompt position costs more than generating). The
verdict is unsafe when the score reaches the threshold; only then are the categories decoded (greedy, a few tokens,
continuing from the same KV cache). The model's own first token must be `safe` or `unsafe`, and an `unsafe` it chose
itself must be followed by a parseable category line; anything else raises `GuardOutputError`, never "safe".

The prompt head (framing, task, categories) is the same for every check of a role, so its keys and values are
computed once and copied for each call (`use_prefix_cache`); the cache of the last check of each role is kept too,
and a check that shares more than the head with it (the chunks of one streamed answer share the whole conversation
before the answer) prefills only the rest; `mode="generate"` is the peers' way (generate the verdict
text, no cache) for the benchmark, and gives the same decisions.
"""

from __future__ import annotations

import asyncio
import inspect
import threading
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Literal

from guards.errors import GuardImageError, GuardModelNotFoundError, GuardOutputError
from guards.llama_guard.batch import batchable, forward_batch, plan_batches
from guards.llama_guard.caches import reusable_cache
from guards.llama_guard.loading import load_causal_lm
from guards.llama_guard.prompt import (
    PromptCategory,
    Role,
    Turn,
    as_turn,
    checked_role,
    encode_segments,
    framing_for,
    head_segments,
    prompt_categories,
    prompt_segments,
    tail_segments,
)
from guards.llama_guard.result import MAX_CATEGORY_TOKENS, LlamaGuardResult, Mode, Scoring, decide
from guards.llama_guard.vision import PreparedImage, VisionTower, image_forward, prepare_image, split_vision
from guards.policy.categories import LlamaGuardVariant, family_for_variant
from guards.sources import resolve_source
from model.images import ImageData
from model.tokenizer import get_tokenizer


@dataclass
class _Prefix:
    ids: list[int]
    cache: Any = None
    lock: threading.Lock = field(default_factory=threading.Lock)


class LlamaGuard:
    """A loaded Llama Guard model plus the policy's category block and threshold. Thread-safe (one check at a
    time per instance; the model is shared, the prefix cache is copied per call). `variant` picks the prompt's
    framing and the tokenizer's family (Llama Guard 4: Llama 4's ids for `safe` / `unsafe` and its stop tokens)."""

    def __init__(
        self,
        model: Any,
        *,
        tokenizer: Any = None,
        categories: Sequence[PromptCategory] | None = None,
        excluded: Iterable[str] = (),
        threshold: float = 0.5,
        use_prefix_cache: bool = True,
        source: str = "",
        cached_conversations: int = 1,
        variant: LlamaGuardVariant = "8b",
    ) -> None:
        if not 0.0 <= threshold <= 1.0:
            raise ValueError(f"threshold must be within 0..1, got {threshold}")
        # Llama Guard 4's full layout: text through its language model, images through its vision tower.
        self.model, self.vision = split_vision(model)
        self.framing = framing_for(variant)
        self.tokenizer = tokenizer or get_tokenizer(family=self.framing.family)
        _check_family(self.tokenizer, self.framing.family, variant)
        self.categories = tuple(categories) if categories is not None else prompt_categories(variant)
        self.excluded = frozenset(excluded)
        self.threshold = threshold
        self.use_prefix_cache = use_prefix_cache
        self.source = source
        self.device = next(model.parameters()).device
        tok = self.tokenizer
        self.safe_id = _single_token(tok, "safe")
        self.unsafe_id = _single_token(tok, "unsafe")
        self.stop_ids = frozenset(tok.stop_ids)  # end of text, end of message, end of turn: the family's own
        self._prefixes: dict[Role, _Prefix] = {
            role: _Prefix(self._encode(head_segments(role, self.categories, self.framing)))
            for role in ("user", "agent")
        }
        self._lock = threading.Lock()
        # The last checks' ids and KV caches per role, newest first (`cached_conversations` of them): the checks of
        # one streamed answer (and a stage's checks with the same conversation) share the head and the earlier
        # turns, so only the text after them is prefilled - per conversation when several are served at once.
        self.cached_conversations = max(1, int(cached_conversations))
        self._last: dict[Role, list[tuple[list[int], Any]]] = {}
        self._cache_kw = "cache" if "cache" in inspect.signature(model.forward).parameters else "past_key_values"

    @classmethod
    def load(
        cls,
        source: str | Path,
        *,
        device: str = "cpu",
        dtype: str = "auto",
        variant: LlamaGuardVariant = "8b",
        enabled: Iterable[str] | None = None,
        excluded: Iterable[str] = (),
        custom: Iterable[PromptCategory] = (),
        threshold: float = 0.5,
        use_prefix_cache: bool = True,
    ) -> LlamaGuard:
        """Load once from a hub id, a local directory or `tiny:NAME`; errors say what, why and how to fix."""
        path = resolve_source(source)
        model = load_causal_lm(path, device=device, dtype=dtype)
        local = Path(path)
        categories = prompt_categories(variant, enabled=enabled, excluded=excluded, custom=custom)
        return cls(
            model,
            tokenizer=get_tokenizer(local if local.is_dir() else None, family=family_for_variant(variant)),
            categories=categories,
            excluded=excluded,
            threshold=threshold,
            use_prefix_cache=use_prefix_cache,
            source=str(source),
            variant=variant,
        )

    # --- public API ----------------------------------------------------------------------------------------------

    @property
    def sees_images(self) -> bool:
        """Whether this checkpoint has a vision tower (Llama Guard 4's full layout)."""
        return self.vision is not None

    def check(
        self, turns: Sequence[Turn], *, mode: Mode = "forward", image: ImageData | None = None
    ) -> LlamaGuardResult:
        """Verdict for the last turn of `turns` (role User or Agent), with the earlier turns as context; with `image`,
        on the image and the conversation together (guards.llama_guard.vision; forward mode only)."""
        role = checked_role(turns)
        if image is not None:
            return self._check_image(turns, image, mode)
        tail_ids = self._encode(tail_segments(turns, self.framing))
        with self._lock:
            start = time.perf_counter()
            if mode == "generate":
                result = self._check_generate(role, tail_ids)
            elif mode == "forward":
                result = self._check_forward(role, tail_ids)
            else:
                raise ValueError(f"unknown Llama Guard mode {mode!r}")
            latency = (time.perf_counter() - start) * 1000
        return _replace(result, latency_ms=latency)

    def check_text(
        self, text: str, *, role: str = "user", conversation: Sequence[tuple[str, str]] = (), mode: Mode = "forward",
        image: ImageData | None = None,
    ) -> LlamaGuardResult:
        """`conversation` is earlier (role, content) pairs; roles user / assistant / agent."""
        return self.check(_turns(text, role, conversation), mode=mode, image=image)

    # the calls a guard process may answer together (guards.runtime.child)
    batched_methods: ClassVar[dict[str, str]] = {"check_text": "check_text_batch"}

    def check_text_batch(self, calls: Sequence[tuple[tuple[Any, ...], dict[str, Any]]]) -> list[Any]:
        """Several `check_text` calls, given as (args, kwargs): the forward-mode text checks scored in one forward
        pass on their conversations' cached prefixes (guards.llama_guard.batch), the others one by one. Each call
        gets its result or its own exception, so one call's failure fails only that call."""
        outcomes: list[Any] = [None] * len(calls)
        together: list[tuple[int, Role, list[int]]] = []
        for index, (args, kwargs) in enumerate(calls):
            try:
                turns, mode, image = _text_call(*args, **kwargs)
                if len(calls) > 1 and mode == "forward" and image is None and self.use_prefix_cache and \
                        batchable(self.model):
                    together.append((index, checked_role(turns), self._encode(tail_segments(turns, self.framing))))
                else:
                    outcomes[index] = self.check(turns, mode=mode, image=image)
            except Exception as exc:  # this call's own failure (a bad role, a tokenizer error)
                outcomes[index] = exc
        if together:
            self._score_together(together, outcomes)
        return outcomes

    def _score_together(self, together: list[tuple[int, Role, list[int]]], outcomes: list[Any]) -> None:
        import torch

        with self._lock, torch.inference_mode():
            start = time.perf_counter()
            rows = []
            for index, role, tail_ids in together:
                prefix = self._prefixes[role]
                ids = prefix.ids + tail_ids
                cache, cached = self._reusable_cache(role, prefix, ids)
                rows.append((index, role, ids, cache, cached))
            for group in plan_batches([(len(ids) - cached, cached) for _, _, ids, _, cached in rows]):
                self._score_group([rows[i] for i in group], outcomes)
            latency = (time.perf_counter() - start) * 1000
        for index, *_ in rows:
            if isinstance(outcomes[index], LlamaGuardResult):
                outcomes[index] = _replace(outcomes[index], latency_ms=latency)

    def _score_group(self, rows: list[tuple[int, Role, list[int], Any, int]], outcomes: list[Any]) -> None:
        try:
            if len(rows) == 1:
                _, _, ids, cache, cached = rows[0]
                logits, cache = self._forward(ids[cached:], cache)
                scored = [(logits, cache)]
            else:
                batch_logits, caches = forward_batch(
                    self.model, self._cache_kw, [(c, i[n:]) for _, _, i, c, n in rows], pad_id=self.safe_id)
                scored = list(zip(batch_logits, caches, strict=True))
        except Exception as exc:  # the pass failed: every check in it failed (each fails closed on its own)
            for index, *_ in rows:
                outcomes[index] = exc
            return
        for (index, role, ids, _, cached), (row_logits, cache) in zip(rows, scored, strict=True):
            self.remember(role, ids, cache)
            try:
                outcomes[index] = self._verdict_from(row_logits, cache, len(ids), cached)
            except Exception as exc:
                outcomes[index] = exc

    async def acheck(self, turns: Sequence[Turn], *, mode: Mode = "forward") -> LlamaGuardResult:
        return await asyncio.to_thread(self.check, turns, mode=mode)

    def prompt_ids(self, turns: Sequence[Turn], image: ImageData | None = None) -> list[int]:
        """The exact ids scored for `turns` (head + tail; with `image`, its tokens first in the user turn)."""
        if image is not None:
            _, prepared = self._prepared(image)
            return self._encode(prompt_segments(turns, self.categories, self.framing, prepared.layout))
        return self._prefixes[checked_role(turns)].ids + self._encode(tail_segments(turns, self.framing))

    # --- scoring -------------------------------------------------------------------------------------------------

    def _check_forward(self, role: Role, tail_ids: list[int]) -> LlamaGuardResult:
        import torch

        prefix = self._prefixes[role]
        with torch.inference_mode():
            if self.use_prefix_cache:
                ids = prefix.ids + tail_ids
                cache, cached = self._reusable_cache(role, prefix, ids)
                logits, cache = self._forward(ids[cached:], cache)
                self.remember(role, ids, cache)  # tokens decoded after `ids` below are cropped off on reuse
            else:
                logits, cache = self._forward(prefix.ids + tail_ids, None)
                cached = 0
            return self._verdict_from(logits, cache, len(prefix.ids) + len(tail_ids), cached)

    def _verdict_from(self, logits: Any, cache: Any, n_prompt: int, n_cached: int) -> LlamaGuardResult:
        """A forward-mode verdict from the last position's logits; an unsafe score decodes the categories after a
        forced `unsafe`, continuing `cache`."""
        score, verdict = self._first_token(logits)
        text: str = verdict
        if score >= self.threshold:
            text = "unsafe" + self._continue(cache, self.unsafe_id)
        return self._decide(score, verdict, text, "forward", n_prompt, n_cached)

    def _check_generate(self, role: Role, tail_ids: list[int]) -> LlamaGuardResult:
        import torch

        ids = self._prefixes[role].ids + tail_ids
        input_ids = torch.tensor([ids], device=self.device)
        with torch.inference_mode():
            out = self.model.generate(
                input_ids=input_ids,
                attention_mask=torch.ones_like(input_ids),
                max_new_tokens=MAX_CATEGORY_TOKENS + 1,
                do_sample=False,
                eos_token_id=sorted(self.stop_ids),
                pad_token_id=sorted(self.stop_ids)[0],
                output_scores=True,
                return_dict_in_generate=True,
            )
        new = out.sequences[0, len(ids) :].tolist()
        score, verdict = self._first_token(out.scores[0][0])
        text = self._decode_until_stop(new)
        if score >= self.threshold and verdict == "safe":
            # The threshold overrides the model's `safe`: decode the categories it gives after a forced `unsafe`
            # exactly as forward mode does, so both modes decide alike.
            with torch.inference_mode():
                _, cache = self._forward(ids, None)
                text = "unsafe" + self._continue(cache, self.unsafe_id)
        return self._decide(score, verdict, text, "generate", len(ids), 0)

    def _check_image(self, turns: Sequence[Turn], image: ImageData, mode: Mode) -> LlamaGuardResult:
        """One prefill with the image's features at its `<|patch|>` positions, then as `_check_forward` (no cache:
        the image sits before the constant head)."""
        import torch

        if mode != "forward":
            raise ValueError("images are scored in forward mode only")
        tower, prepared = self._prepared(image)
        ids = self._encode(prompt_segments(turns, self.categories, self.framing, prepared.layout))
        with self._lock:
            start = time.perf_counter()
            with torch.inference_mode():
                logits, cache = image_forward(self.model, tower, ids, prepared.tiles.pixels, self._cache_kw)
                result = self._verdict_from(logits, cache, len(ids), 0)
            latency = (time.perf_counter() - start) * 1000
        return _replace(result, latency_ms=latency)

    def _prepared(self, image: ImageData) -> tuple[VisionTower, PreparedImage]:
        if self.vision is None:
            raise GuardImageError(f"the Llama Guard checkpoint {self.source or '(in memory)'} has no vision tower: it "
                                  f"cannot judge the image {image.label}")
        return self.vision, prepare_image(image, self.vision.spec)

    def _decide(
        self, score: float, verdict: Literal["safe", "unsafe"], text: str, mode: Mode, n_prompt: int, n_cached: int
    ) -> LlamaGuardResult:
        return decide(score, verdict, text, Scoring(mode, n_prompt, n_cached), self.threshold, self.excluded)

    def _first_token(self, logits: Any) -> tuple[float, Literal["safe", "unsafe"]]:
        import torch

        logits = logits.float().reshape(-1)
        if not torch.isfinite(logits).all():
            raise GuardOutputError("Llama Guard produced non-finite logits")
        probs = torch.softmax(logits, dim=-1)
        top = int(torch.argmax(logits))
        if top == self.unsafe_id:
            verdict: Literal["safe", "unsafe"] = "unsafe"
        elif top == self.safe_id:
            verdict = "safe"
        else:
            shown = self.tokenizer.decode([top])
            raise GuardOutputError(f"Llama Guard's first token is {shown!r}, neither 'safe' nor 'unsafe'")
        return float(probs[self.unsafe_id]), verdict

    def _forward(self, ids: list[int], cache: Any) -> tuple[Any, Any]:
        import torch

        input_ids = torch.tensor([ids], device=self.device)
        # transformers 5.x renamed `past_key_values` to `cache` (the old name warns, and goes in 5.40).
        out = self.model(input_ids=input_ids, use_cache=True, logits_to_keep=1, **{self._cache_kw: cache})
        return out.logits[0, -1], getattr(out, self._cache_kw)

    def _continue(self, cache: Any, first_id: int) -> str:
        """Greedy decode after `first_id` until a stop token; text without the stop token. No stop within the limit
        gives text that will not parse (so: an error)."""
        import torch

        generated: list[int] = []
        next_id = first_id
        for _ in range(MAX_CATEGORY_TOKENS):
            logits, cache = self._forward([next_id], cache)
            next_id = int(torch.argmax(logits))
            if next_id in self.stop_ids:
                return self.tokenizer.decode(generated)
            generated.append(next_id)
        return self.tokenizer.decode(generated) + "<no stop token>"

    def _decode_until_stop(self, ids: list[int]) -> str:
        for i, token in enumerate(ids):
            if token in self.stop_ids:
                return self.tokenizer.decode(ids[:i])
        return self.tokenizer.decode(ids) + "<no stop token>"

    def _reusable_cache(self, role: Role, prefix: _Prefix, ids: list[int]) -> tuple[Any, int]:
        return reusable_cache(self._last.get(role, []), ids, len(prefix.ids), self.cached_conversations,
                              lambda: self._prefix_cache(prefix))

    def remember(self, role: Role, ids: list[int], cache: Any) -> None:
        """Keep a check's cache for the next check of the same conversation (the oldest beyond the limit dropped)."""
        entries = self._last.setdefault(role, [])
        entries.insert(0, (ids, cache))
        del entries[self.cached_conversations :]

    def _prefix_cache(self, prefix: _Prefix) -> Any:
        with prefix.lock:
            if prefix.cache is None:
                _, prefix.cache = self._forward(prefix.ids, None)
            return prefix.cache

    def _encode(self, segments: Sequence[Any]) -> list[int]:
        return encode_segments(segments, self.tokenizer.encode, self.tokenizer.special_id)


def _turns(text: str, role: str, conversation: Sequence[tuple[str, str]]) -> list[Turn]:
    return [as_turn(r, c) for r, c in conversation] + [as_turn(role, text)]


def _text_call(
    text: str, *, role: str = "user", conversation: Sequence[tuple[str, str]] = (), mode: Mode = "forward",
    image: ImageData | None = None,
) -> tuple[list[Turn], Mode, ImageData | None]:
    """`check_text`'s arguments as the check they ask for."""
    return _turns(text, role, conversation), mode, image


def _single_token(tokenizer: Any, text: str) -> int:
    ids = tokenizer.encode(text)
    if len(ids) != 1:
        raise GuardModelNotFoundError(f"the tokenizer splits {text!r} into {len(ids)} tokens; not a Llama tokenizer")
    return ids[0]


def _check_family(tokenizer: Any, family: str, variant: str) -> None:
    """The variant's prompt needs its family's tokenizer (Llama Guard 4: Llama 4's 202,048 ids)."""
    found = getattr(tokenizer, "family", family)
    if found != family:
        raise GuardModelNotFoundError(
            f"Llama Guard variant {variant!r} needs the {family} tokenizer, but the model's tokenizer is {found}: "
            "set models.llama_guard.variant to match the checkpoint"
        )


def _replace(result: LlamaGuardResult, **changes: Any) -> LlamaGuardResult:
    from dataclasses import replace

    return replace(result, **changes)

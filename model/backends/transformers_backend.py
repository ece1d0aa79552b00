"""Local generation with Hugging Face transformers: hub id or directory, dtype, device_map, streaming from a thread.

Decoding is a plain loop over `model(...)` rather than `generate()` (its steps are in `model.backends.decoding`:
prefill, decode one token, choose the next token), so this module owns the KV cache: it keeps the cache of the last
call together with the ids it covers, and a new prompt that extends them (the next agent step re-encodes earlier turns
verbatim) only prefills its new suffix. Greedy output is the same with and without reuse. A special id the model
generates is streamed as a `SpecialToken` delta (see `model.completion`).

A Llama 4 checkpoint with its vision tower loads whole (`Llama4ForConditionalGeneration`) and takes images
(`accepts_images`): the tiles of `GenerationParams.images` go to the prefill as `pixel_values`, their features land at
the prompt's `<|patch|>` positions, and decoding goes on from the KV cache as for text (`model.backends.vision`).
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import threading
import time
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from model.backends.base import BackendStats, GenerationParams, LoadEvent, ProgressCallback
from model.backends.construction import from_pretrained
from model.backends.decoding import IncrementalDecoder, TokenChooser, decode_one, prefill, sampler, special_token_ids
from model.backends.errors import BackendError, ModelNotFoundError
from model.backends.grammar import GrammarCompiler, grammar_problem
from model.backends.loading import resolve_model_source
from model.backends.vision import (
    ImageBlock,
    VisionInfo,
    directory_has_vision,
    image_blocks,
    pixel_values,
    reusable_prefix,
    vision_info,
)
from model.completion import STOP_REASONS
from model.constraint import OutputConstraint
from model.hf_import import quiet_hf_progress, transformers_names

logger = logging.getLogger(__name__)
LLAMA_STOP_IDS = (128_001, 128_008, 128_009)  # <|end_of_text|>, <|eom_id|>, <|eot_id|>
_DTYPES = {
    "float32": "float32",
    "fp32": "float32",
    "bfloat16": "bfloat16",
    "bf16": "bfloat16",
    "float16": "float16",
    "fp16": "float16",
    "half": "float16",
}
_DONE = object()


@dataclass(frozen=True)
class LoadedModel:
    model: Any  # transformers PreTrainedModel
    tokenizer: Any  # transformers tokenizer of the checkpoint (decoding only; prompts arrive as ids)
    directory: Path
    stop_ids: frozenset[int]
    max_positions: int
    cache_arg: str  # forward()'s keyword for the KV cache: `cache` (transformers >= 5.2x) or `past_key_values`
    vision: VisionInfo | None = None  # a model with its vision tower (takes images)


_LOADED: dict[tuple[str, str, str], LoadedModel] = {}
_LOADED_LOCK = threading.Lock()


def load_model(
    source: str, *, dtype: str = "auto", device: str = "auto", on_progress: ProgressCallback | None = None
) -> LoadedModel:
    """Load (once per process and settings) the model and tokenizer of `source`."""
    emit = on_progress or (lambda event: None)
    directory = resolve_model_source(source, on_progress=emit)
    key = (str(directory.resolve()), dtype, device)
    with _LOADED_LOCK:
        if key not in _LOADED:
            _LOADED[key] = _load_uncached(source, directory, dtype=dtype, device=device, emit=emit)
        else:
            emit(LoadEvent("ready", f"{source} already loaded", 1.0))
        return _LOADED[key]


def stop_token_ids(tokenizer: Any) -> set[int]:
    """The tokenizer's own stop tokens by name (Llama 3's `<|eot_id|>`..., Llama 4's `<|eot|>`...): fixed Llama 3 ids
    would be ordinary text in Llama 4's vocabulary. A tokenizer naming none gets Llama 3's ids."""
    named = {token_id for token_id, text in special_token_ids(tokenizer).items() if text in STOP_REASONS}
    return named or set(LLAMA_STOP_IDS)


def _load_uncached(
    source: str, directory: Path, *, dtype: str, device: str, emit: Callable[[LoadEvent], None]
) -> LoadedModel:
    import torch

    AutoModelForCausalLM, AutoTokenizer, AutoModelForImageTextToText = transformers_names(
        "AutoModelForCausalLM", "AutoTokenizer", "AutoModelForImageTextToText")
    # A vision checkpoint through AutoModelForCausalLM would load its text part alone and drop the vision tower.
    model_class = AutoModelForImageTextToText if directory_has_vision(directory) else AutoModelForCausalLM

    started = time.perf_counter()
    kwargs: dict[str, Any] = {"dtype": _torch_dtype(dtype)}
    if device == "auto":
        if torch.cuda.is_available():
            kwargs["device_map"] = "auto"  # accelerate spreads the layers over every visible GPU
    else:
        kwargs["device_map"] = device
    with quiet_hf_progress():
        emit(LoadEvent("tokenizer", f"loading tokenizer from {directory}"))
        try:
            tokenizer = AutoTokenizer.from_pretrained(str(directory))
            emit(LoadEvent("weights", f"loading weights from {directory} (dtype={dtype}, device={device})"))
            model = from_pretrained(model_class, str(directory), **kwargs)
        except (OSError, ValueError) as exc:
            raise ModelNotFoundError(
                f"model files in {directory} (for {source})",
                f"transformers could not load them: {str(exc).strip().splitlines()[0] if str(exc).strip() else exc!r}",
                "check that the directory is a complete Hugging Face causal-LM checkpoint and the dtype/device exist",
            ) from exc
    model.eval()
    eos = model.generation_config.eos_token_id
    eos_ids = {eos} if isinstance(eos, int) else set(eos or ())
    emit(LoadEvent("ready", f"loaded {source} in {time.perf_counter() - started:.1f}s", 1.0))
    logger.info("loaded %s from %s in %.1f s (dtype=%s, device=%s)", source, directory, time.perf_counter() - started,
                dtype, device)
    return LoadedModel(
        model=model,
        tokenizer=tokenizer,
        directory=directory,
        stop_ids=frozenset(eos_ids | stop_token_ids(tokenizer)),
        max_positions=int(getattr(model.config.get_text_config(), "max_position_embeddings", 8192)),
        cache_arg="cache" if "cache" in inspect.signature(model.forward).parameters else "past_key_values",
        vision=vision_info(model),
    )


def _torch_dtype(name: str) -> Any:
    import torch

    if name == "auto":
        return "auto"
    try:
        return getattr(torch, _DTYPES[name.lower()])
    except KeyError as exc:
        raise BackendError(f"unknown dtype {name!r}; use auto, bfloat16, float16 or float32") from exc


class TransformersBackend:
    """Streams completions from a local transformers model. One generation at a time per backend."""

    # A generation the agent starts ahead of its guards and then discards costs only local compute (the agent's
    # speculative generation is on by default for this backend; see assistant/agent/deps.py Performance).
    speculation_ok = True

    def __init__(
        self,
        source: str,
        *,
        dtype: str = "auto",
        device: str = "auto",
        context_window: int = 8192,
        reuse_cache: bool = True,
        stop_ids: Sequence[int] | None = None,
        on_progress: ProgressCallback | None = None,
    ) -> None:
        self.source = source
        self.name = f"transformers:{source}"
        self.dtype = dtype
        self.device = device
        self.context_window = context_window
        self.reuse_cache = reuse_cache
        self.stats = BackendStats()
        self.on_progress = on_progress
        self._extra_stop_ids = tuple(stop_ids or ())
        self._loaded: LoadedModel | None = None
        self._load_lock = threading.Lock()
        self._generate_lock = threading.Lock()
        self._cache: Any = None  # transformers Cache of the last call
        self._cache_ids: tuple[int, ...] = ()  # exactly the tokens whose keys/values `_cache` holds
        self._cache_images: tuple[str, ...] = ()  # sha256 of the images whose features are in `_cache`, in order
        self._grammars: GrammarCompiler | None = None  # made at the first constrained call

    # ----- loading -----

    def load(self) -> LoadedModel:
        """Load the model (blocking; idempotent). The first stream() does this in a worker thread."""
        with self._load_lock:
            if self._loaded is None:
                self._loaded = load_model(
                    self.source, dtype=self.dtype, device=self.device, on_progress=self.on_progress
                )
                self.context_window = min(self.context_window, self._loaded.max_positions)
            return self._loaded

    @property
    def model_dir(self) -> Path | None:
        """The checkpoint directory once loaded (or when the source is a local path); None before a hub load."""
        if self._loaded is not None:
            return self._loaded.directory
        local = Path(self.source).expanduser()
        return local if local.is_dir() else None

    @property
    def accepts_images(self) -> bool:
        """A Llama 4 checkpoint with its vision tower: read from a local checkpoint's config before loading, else from
        the loaded model (loading it)."""
        if self._loaded is None:
            local = self.model_dir
            if local is not None and (local / "config.json").is_file():
                return directory_has_vision(local)
        return self.load().vision is not None

    @property
    def stop_ids(self) -> frozenset[int]:
        return self.load().stop_ids | frozenset(self._extra_stop_ids)

    def reset_cache(self) -> None:
        with self._generate_lock:
            self._cache, self._cache_ids, self._cache_images = None, (), ()

    async def aclose(self) -> None:
        self.reset_cache()

    # ----- generation -----

    async def stream(self, prompt_ids: list[int], params: GenerationParams) -> AsyncIterator[str]:
        if not prompt_ids:
            raise BackendError("empty prompt")
        await asyncio.to_thread(self.load)
        if len(prompt_ids) >= self.context_window:
            raise BackendError(
                f"prompt of {len(prompt_ids)} tokens does not fit the context window of {self.context_window} tokens"
            )
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[object] = asyncio.Queue()
        cancel = threading.Event()
        started = time.perf_counter()
        first = True

        def put(item: object) -> None:
            loop.call_soon_threadsafe(queue.put_nowait, item)

        worker = loop.run_in_executor(None, self._generate, list(prompt_ids), params, put, cancel)
        try:
            while True:
                item = await queue.get()
                if item is _DONE:
                    break
                if isinstance(item, BaseException):
                    raise BackendError(f"{self.name}: generation failed: {item}") from item
                if first:
                    self.stats.last_first_token_s = time.perf_counter() - started
                    first = False
                yield item  # type: ignore[misc]  # str, or SpecialToken for a generated special id
        finally:
            cancel.set()
            await asyncio.shield(worker)

    def _generate(
        self, prompt_ids: list[int], params: GenerationParams, put: Callable[[object], None], cancel: threading.Event
    ) -> None:
        try:
            with self._generate_lock:
                self._generate_locked(prompt_ids, params, put, cancel)
        except BaseException as exc:  # handed to the event loop, which raises it as BackendError
            logger.warning("%s: generation failed", self.name, exc_info=True)
            put(exc)
        finally:
            put(_DONE)

    def token_chooser(self, prompt_ids: list[int], params: GenerationParams) -> TokenChooser:
        """How this call picks each next token from the logits (the benchmark's forced backend overrides this):
        under `params.constraint`, only among the tokens its grammar allows (`model.backends.grammar`)."""
        choose = sampler(params)
        if params.constraint is None:
            return choose
        if self._grammars is None:
            loaded = self.load()
            self._grammars = GrammarCompiler(loaded.tokenizer, int(loaded.model.config.vocab_size), self.stop_ids)
        return self._grammars.chooser(params.constraint, choose)

    def constraint_problem(self, constraint: OutputConstraint) -> str | None:
        """Any constraint xgrammar (a dependency of the project) can build a grammar for is decoded here."""
        return grammar_problem(constraint)

    def _generate_locked(
        self, prompt_ids: list[int], params: GenerationParams, put: Callable[[object], None], cancel: threading.Event
    ) -> None:
        import torch

        loaded = self.load()
        if params.images and loaded.vision is None:
            raise BackendError(f"{self.name} has no vision tower and takes no images (a Llama 4 checkpoint with its "
                               "vision tower does)")
        blocks = image_blocks(prompt_ids, params.images, loaded.vision) if loaded.vision is not None else []
        choose = self.token_chooser(prompt_ids, params)
        stop_ids = self.stop_ids
        max_new = min(params.max_new_tokens, self.context_window - len(prompt_ids))
        started = time.perf_counter()
        cache, reused = self._take_cache(prompt_ids, blocks)
        new_blocks = [block for block in blocks if block.start >= reused]
        pixels = pixel_values(new_blocks, loaded.vision.spec) if loaded.vision is not None else None
        generated: list[int] = []
        covered = list(prompt_ids)  # ids whose keys/values are in the cache after each forward
        decoder = IncrementalDecoder(loaded.tokenizer)
        with torch.inference_mode():
            out, cache = prefill(loaded.model, loaded.cache_arg, prompt_ids[reused:], cache, pixels)
            prefill_s = time.perf_counter() - started
            while True:
                token = choose(out.logits[0, -1])
                generated.append(token)
                done = token in stop_ids or len(generated) >= max_new
                for delta in decoder.push(token, final=done):
                    put(delta)
                if done or cancel.is_set():
                    break
                out = decode_one(loaded.model, loaded.cache_arg, token, cache)
                covered.append(token)
        # Kept after a cancel too (a discarded speculative generation): the cache holds exactly `covered`, and
        # is only ever reused for a prompt that starts with the same ids.
        if self.reuse_cache:
            self._cache, self._cache_ids = cache, tuple(covered)
            self._cache_images = tuple(block.image.sha256 for block in blocks)
        self.stats.record(prompt=len(prompt_ids), cached=reused, generated=len(generated))
        self.stats.last_generated_ids = tuple(generated)
        self.stats.last_prefill_s = prefill_s
        self.stats.last_total_s = time.perf_counter() - started
        self.stats.last_cancelled = cancel.is_set()

    def _take_cache(self, prompt_ids: list[int], blocks: Sequence[ImageBlock] = ()) -> tuple[Any, int]:
        """The stored cache cropped to the longest common prefix with the new prompt (no further than its images
        allow: `model.backends.vision.reusable_prefix`), and that prefix's length."""
        cache, cached_ids, cached_images = self._cache, self._cache_ids, self._cache_images
        self._cache, self._cache_ids, self._cache_images = None, (), ()  # invalid until this call finishes cleanly
        if not self.reuse_cache or cache is None:
            return None, 0
        common = 0
        for old, new in zip(cached_ids, prompt_ids, strict=False):
            if old != new:
                break
            common += 1
        common = min(common, len(prompt_ids) - 1)  # at least one prompt token must run to get the next logits
        common = reusable_prefix(common, blocks, cached_images)
        if common <= 0 or cache.get_seq_length() != len(cached_ids):
            return None, 0
        surplus = len(cached_ids) - common
        if surplus:
            cache.crop(-surplus)  # a negative argument removes that many tokens in every transformers version
        return cache, common

"""The backend contract: a model turns prompt token ids (and the prompt's images) into a stream of raw completion text.

Images travel in `GenerationParams.images`: the prompt's images in the order of their `<|patch|>` tokens
(`model.prompt_format.dialog_images` of the messages the prompt encodes), so every wrapper that passes `params` on
passes them too. Only a backend whose `accepts_images` is true reads them; every other backend refuses a call that
carries any (`refuse_images`), so an image never silently goes missing between the guard that judged it and the model.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Protocol, runtime_checkable

from model.backends.errors import BackendError
from model.constraint import OutputConstraint
from model.images import ImageData


@dataclass(frozen=True)
class GenerationParams:
    """Decoding settings for one completion. temperature 0 means greedy."""

    max_new_tokens: int = 1024
    temperature: float = 0.0
    top_p: float = 0.9
    seed: int | None = None
    # the completion must be one of the constraint's texts (structured output, a forced tool call); None: free text
    constraint: OutputConstraint | None = None
    # the prompt's images in prompt order (see the module docstring); () for a text prompt
    images: tuple[ImageData, ...] = ()

    def __post_init__(self) -> None:
        if self.max_new_tokens < 1:
            raise ValueError(f"max_new_tokens must be >= 1, got {self.max_new_tokens}")
        if self.temperature < 0:
            raise ValueError(f"temperature must be >= 0, got {self.temperature}")
        if not 0 < self.top_p <= 1:
            raise ValueError(f"top_p must be in (0, 1], got {self.top_p}")

    @property
    def greedy(self) -> bool:
        return self.temperature == 0


@dataclass
class BackendStats:
    """Counters across every call of one backend, plus the figures of the last call (for prefill measurements)."""

    calls: int = 0
    prompt_tokens: int = 0  # tokens of every prompt sent
    cached_tokens: int = 0  # prompt tokens whose KV cache was reused instead of recomputed
    prefill_tokens: int = 0  # prompt tokens actually run through the model (prompt - cached)
    generated_tokens: int = 0
    last_prompt_tokens: int = 0
    last_cached_tokens: int = 0
    last_prefill_tokens: int = 0
    last_generated_tokens: int = 0
    last_first_token_s: float | None = None  # seconds from the call to the first delta
    last_generated_ids: tuple[int, ...] = ()  # ids of the last completion when the backend knows them
    last_prefill_s: float | None = None  # seconds of the last call's prefill (local backends)
    last_total_s: float | None = None  # seconds of the last call's whole generation (local backends)
    last_cancelled: bool = False  # the last call was stopped by its consumer
    # remote backends: the last call's token counts came from the server's `usage` (False: counted here instead)
    last_usage_from_server: bool | None = None

    def record(self, *, prompt: int, cached: int, generated: int) -> None:
        self.calls += 1
        self.prompt_tokens += prompt
        self.cached_tokens += cached
        self.prefill_tokens += prompt - cached
        self.generated_tokens += generated
        self.last_prompt_tokens = prompt
        self.last_cached_tokens = cached
        self.last_prefill_tokens = prompt - cached
        self.last_generated_tokens = generated


@dataclass(frozen=True)
class LoadEvent:
    """Progress while a backend loads, for the TUI or CLI to display (library code never prints)."""

    stage: Literal["resolve", "download", "tokenizer", "weights", "ready"]
    message: str
    fraction: float | None = None  # 0..1 when known


ProgressCallback = Callable[[LoadEvent], None]


@runtime_checkable
class ModelBackend(Protocol):
    """Streams the raw completion of a prompt.

    Deltas concatenate to exactly what the model generated, special tokens written as their strings
    (`<|python_tag|>`). A special token the model generated as its id is a delta of its own of type
    `model.completion.SpecialToken`; a plain `str` is text even when it spells a special token (only the former is a
    control token, so a user or a document that spells `<|eot_id|>` cannot end or steer the model's turn). The
    stream ends after a stop token (`<|eot_id|>`, `<|eom_id|>`, `<|end_of_text|>`), which is included, or when
    `max_new_tokens` is reached (then no stop token); consumers drop anything a backend yields after the first stop
    token (`model.completion.CompletionBuilder`).

    Every member is declared here and every backend has it, with a trivial value where it means nothing for that
    backend (a remote server has no `model_dir` and nothing to `load`): callers use them directly. `BackendDefaults`
    supplies those trivial values to a backend or a test double.
    """

    name: str  # for messages: `transformers:PATH`, `openai:URL#model`, ...
    context_window: int
    stats: BackendStats
    on_progress: ProgressCallback | None  # receives `LoadEvent`s while `load` runs (set before the first load)

    @property
    def accepts_images(self) -> bool:
        """The model reads the pixels of `GenerationParams.images` (a Llama 4 checkpoint with its vision tower on the
        transformers backend); False: a call with images is refused (`refuse_images`)."""
        ...

    @property
    def speculation_ok(self) -> bool:
        """A generation started ahead of the guards and then discarded is cheap and harmless (the agent's
        speculative generation is on by default only then; see assistant/agent/deps.py)."""
        ...

    @property
    def model_dir(self) -> Path | None:
        """The local checkpoint directory (its tokenizer files tokenize the prompts); None when there is none."""
        ...

    def load(self) -> object:
        """Load the model now (blocking; idempotent); the first `stream` does it otherwise. A no-op without weights."""
        ...

    def stream(self, prompt_ids: list[int], params: GenerationParams) -> AsyncIterator[str]: ...

    def constraint_problem(self, constraint: OutputConstraint) -> str | None:
        """Why this backend cannot decode under `constraint` (`GenerationParams.constraint`), or None when it can.
        Asked before a request runs, so a client gets a 400 instead of an answer that ignores the constraint."""
        ...

    async def aclose(self) -> None:
        """Release connections / the KV cache."""
        ...


class BackendDefaults:
    """The trivial values of the optional `ModelBackend` members, for backends (and test doubles) without weights:
    no speculation, no local directory, nothing to load or close."""

    name: str = "backend"
    on_progress: ProgressCallback | None = None
    speculation_ok: bool = False
    accepts_images: bool = False

    @property
    def model_dir(self) -> Path | None:
        return None

    def load(self) -> object:
        return None

    def constraint_problem(self, constraint: OutputConstraint) -> str | None:
        return f"the model backend {self.name} has no constrained decoding"

    async def aclose(self) -> None:
        return None


def refuse_images(backend_name: str, params: GenerationParams) -> None:
    """What a backend that takes no images does with a call that carries some: BackendError, never a silent drop."""
    if params.images:
        names = ", ".join(image.name for image in params.images)
        raise BackendError(f"the model backend {backend_name} takes no images, and this prompt has "
                           f"{len(params.images)} ({names}); images need a Llama 4 checkpoint with its vision tower "
                           "on the transformers backend")


class MainModelSpec(Protocol):
    """What `load_backend` reads of a policy's `models.main` (guards.policy.models.MainModelConfig satisfies it; this
    layer sits below the policy, so it names the fields instead of importing the class)."""

    @property
    def source(self) -> str: ...
    @property
    def backend(self) -> str: ...
    @property
    def base_url(self) -> str | None: ...
    @property
    def api_key_env(self) -> str | None: ...
    @property
    def device(self) -> str: ...
    @property
    def dtype(self) -> str: ...
    @property
    def context_window(self) -> int: ...

"""A Chat Completions request's generation settings and token usage: the main model as one request sees it.

`parse_sampling` reads `max_tokens` / `max_completion_tokens`, `temperature`, `top_p`, `seed` and `stop` (a 400
naming the field for a value the server cannot honour; fields it never honours are a 400 too, never ignored).
`RequestBackend` wraps the main model for one request: every model call of the turn gets the request's settings in
place of the policy's (`GenerationParams`, which every backend honours, with `structured.py`'s constraints), ends at
the first `stop` string (cut here, so the same on every backend: the stop string is not part of the answer, an
end-of-turn token takes its place), and adds its tokens to the request's `Usage`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from assistant.server.errors import ApiError
from model.backends.base import BackendStats, GenerationParams, ModelBackend
from model.completion import STOP_REASONS, SpecialToken
from model.constraint import OutputConstraint

MAX_STOP = 4  # OpenAI's limit on stop sequences
UNSUPPORTED = {  # field -> the value(s) that mean "not used"; anything else is a 400 naming the field
    "logprobs": (None, False), "top_logprobs": (None, 0), "logit_bias": (None, {}),
    "presence_penalty": (None, 0, 0.0), "frequency_penalty": (None, 0, 0.0),
}  # response_format and tool_choice: assistant/server/structured.py


@dataclass(frozen=True)
class Sampling:
    """The request's own settings; None: the policy's (`models.main`)."""

    max_new_tokens: int | None = None
    temperature: float | None = None
    top_p: float | None = None
    seed: int | None = None
    stop: tuple[str, ...] = ()
    constraint: OutputConstraint | None = None  # response_format: every call of the turn (structured.py)
    forced: OutputConstraint | None = None  # tool_choice: the calls on the turn's first prompt

    def apply(self, params: GenerationParams, *, first_prompt: bool = True) -> GenerationParams:
        changes: dict[str, Any] = {name: value for name in ("max_new_tokens", "temperature", "top_p", "seed")
                                   if (value := getattr(self, name)) is not None}
        constraint = self.forced if first_prompt and self.forced is not None else self.constraint
        if constraint is not None:
            changes["constraint"] = constraint
        return dataclasses.replace(params, **changes) if changes else params


@dataclass
class Usage:
    """The main model's tokens for one request: every call of its turn (a speculative one the guards discarded
    included: its prompt was run). Completion tokens are counted with the model's tokenizer (a special token the
    model generated is one token), the same on every backend."""

    prompt_tokens: int = 0
    completion_tokens: int = 0
    calls: int = 0
    last_hit_limit: bool = False  # the last call ended without a stop token: max_tokens cut it

    def body(self) -> dict[str, int]:
        return {"prompt_tokens": self.prompt_tokens, "completion_tokens": self.completion_tokens,
                "total_tokens": self.prompt_tokens + self.completion_tokens}


def _bad(message: str, param: str) -> ApiError:
    return ApiError(400, message, "invalid_request", param=param)


def _number(body: dict[str, Any], name: str) -> float | None:
    value = body.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise _bad(f"{name} must be a number", name)
    return float(value)


def parse_sampling(body: dict[str, Any], *, max_new_tokens: int) -> Sampling:
    """The request's settings; `max_new_tokens` is the policy's ceiling (the prompt budget leaves room for it)."""
    for name, unused in UNSUPPORTED.items():
        if name in body and body[name] not in unused:
            raise _bad(f"{name} is not supported by this server", name)
    limit: int | None = None
    for name in ("max_completion_tokens", "max_tokens"):
        value = body.get(name)
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise _bad(f"{name} must be an integer >= 1", name)
        if value > max_new_tokens:
            raise _bad(f"{name} is {value}; the policy allows at most {max_new_tokens} (models.main.max_new_tokens)",
                       name)
        limit = value if limit is None else min(limit, value)
    temperature = _number(body, "temperature")
    if temperature is not None and not 0 <= temperature <= 2:
        raise _bad("temperature must be between 0 and 2", "temperature")
    top_p = _number(body, "top_p")
    if top_p is not None and not 0 < top_p <= 1:
        raise _bad("top_p must be in (0, 1] (0 is not supported: use temperature 0 for greedy decoding)", "top_p")
    seed = body.get("seed")
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
        raise _bad("seed must be an integer", "seed")
    return Sampling(limit, temperature, top_p, seed, _stops(body.get("stop")))


def _stops(raw: Any) -> tuple[str, ...]:
    if raw is None:
        return ()
    stops = [raw] if isinstance(raw, str) else raw
    if not isinstance(stops, list) or not all(isinstance(s, str) and s for s in stops):
        raise _bad("stop must be a non-empty string or a list of non-empty strings", "stop")
    if len(stops) > MAX_STOP:
        raise _bad(f"stop may list at most {MAX_STOP} sequences", "stop")
    return tuple(stops)


class StopCutter:
    """Cuts a stream of deltas at the first of `stops`: text is held back only while it may be the start of one."""

    def __init__(self, stops: tuple[str, ...]) -> None:
        self.stops = stops
        self.held = ""
        self.stopped = False

    def push(self, delta: str) -> list[str]:
        """What may be released after `delta`; a stop string found ends the output with an end-of-turn token."""
        if isinstance(delta, SpecialToken):
            return [*self.flush(), delta]
        self.held += delta
        found = [(i, s) for s in self.stops if (i := self.held.find(s)) >= 0]
        if found:
            at = min(found)[0]
            before, self.held, self.stopped = self.held[:at], "", True
            return [*([before] if before else []), SpecialToken("<|eot_id|>")]
        keep = max((n for s in self.stops for n in range(1, len(s)) if self.held.endswith(s[:n])), default=0)
        out, self.held = self.held[: len(self.held) - keep], self.held[len(self.held) - keep:]
        return [out] if out else []

    def flush(self) -> list[str]:
        out, self.held = self.held, ""
        return [out] if out else []


class RequestBackend:
    """The main model for one request: its settings, its stop strings, its usage. Everything else is the wrapped
    backend's."""

    def __init__(self, backend: ModelBackend, sampling: Sampling, usage: Usage,
                 count: Callable[[str], int], *, continue_from: list[int] | None = None) -> None:
        self._backend = backend
        self._sampling = sampling
        self._usage = usage
        self._count = count  # tokens of a plain text (the main model's tokenizer)
        self.name = backend.name
        self.on_progress = backend.on_progress
        self._first_prompt: tuple[int, ...] | None = None  # the turn's first prompt (a forced tool call's)
        # a continuation: the (judged) text of the trailing assistant message, as plain-text ids appended to the
        # turn's first prompt, which ends with the assistant header: Meta's format goes on inside that message
        self._continue_from = list(continue_from or ())

    @property
    def model_dir(self) -> Path | None:
        return self._backend.model_dir

    @property
    def context_window(self) -> int:
        return self._backend.context_window

    @property
    def stats(self) -> BackendStats:
        return self._backend.stats

    @property
    def speculation_ok(self) -> bool:
        return self._backend.speculation_ok

    @property
    def accepts_images(self) -> bool:
        return self._backend.accepts_images

    def load(self) -> object:
        return self._backend.load()

    def constraint_problem(self, constraint: OutputConstraint) -> str | None:
        return self._backend.constraint_problem(constraint)

    async def aclose(self) -> None:  # the shared backend outlives the request
        return None

    async def stream(self, prompt_ids: list[int], params: GenerationParams) -> AsyncIterator[str]:
        usage = self._usage
        usage.calls += 1
        cutter = StopCutter(self._sampling.stop)
        text: list[str] = []
        specials = 0
        ended = False
        if self._first_prompt is None:
            self._first_prompt = tuple(prompt_ids)
        first = tuple(prompt_ids) == self._first_prompt  # also a repeat of a discarded speculative start
        if first and self._continue_from:
            prompt_ids = [*prompt_ids, *self._continue_from]
        usage.prompt_tokens += len(prompt_ids)
        deltas = self._backend.stream(prompt_ids, self._sampling.apply(params, first_prompt=first))
        try:
            async for delta in deltas:
                for piece in cutter.push(delta) if cutter.stops else [delta]:
                    if isinstance(piece, SpecialToken):
                        specials += 1
                        ended = ended or piece in STOP_REASONS
                    else:
                        text.append(piece)
                    yield piece
                if cutter.stopped:
                    return
            for piece in cutter.flush():
                text.append(piece)
                yield piece
        finally:
            usage.completion_tokens += specials + (self._count("".join(text)) if text else 0)
            usage.last_hit_limit = not ended
            close = getattr(deltas, "aclose", None)
            if close is not None:  # a stop string ended it early: the backend stops generating now
                await close()


def counter(tokenizer: Any) -> Callable[[str], int]:
    return lambda text: len(tokenizer.encode(text))


__all__ = ["RequestBackend", "Sampling", "StopCutter", "Usage", "counter", "parse_sampling"]

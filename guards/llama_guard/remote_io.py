"""Reading the remote Llama Guard's answers (`guards.llama_guard.remote`), fail-closed: one time budget per check
(every request of it, model discovery included, gets only what is left), a bounded body (streamed, never more than
the limit read), strict JSON (a duplicated key anywhere, or NaN / Infinity, is a guard error: Python's json would keep
the last of two keys and read NaN as a number), and log-probabilities that must be coherent and agree with the
generated text."""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable, Mapping
from typing import Any, Literal

from guards.errors import GuardError, GuardOutputError

MAX_RESPONSE_BYTES = 256 * 1024  # a /v1/completions answer with 20 top log-probabilities is about 2 KB
PROMPT_LOGPROB_BYTES = 256  # per prompt token, on top, for an answer carrying vLLM's prompt_logprobs (about 80 used)
TOP_LOGPROBS = 20  # vLLM's default cap (--max-logprobs)
# Top-k probabilities of one distribution sum to at most 1; vLLM's float32 log-softmax is off by ~1e-6.
PROBABILITY_TOLERANCE = 1e-3


class GuardServerError(GuardError):
    """The Llama Guard server could not be reached, timed out or answered an HTTP error."""


class Budget:
    """One deadline for a whole check (or probe): each request gets the time left, the body is read against it."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.deadline = time.monotonic() + seconds

    def left(self, url: str) -> float:
        """Seconds left; none left is a GuardServerError (the check timed out)."""
        left = self.deadline - time.monotonic()
        if left <= 0:
            raise GuardServerError(f"Llama Guard server {url} timed out: the check's {self.seconds:g} s are spent")
        return left


def read_body(response: Any, url: str, limit: int, budget: Budget) -> bytes:
    """The raw body of a streamed httpx response, at most `limit` bytes, within the budget. Compressed bodies are
    refused (the request asks for identity): a small compressed body could decode to any size."""
    encoding = response.headers.get("content-encoding", "identity").strip().lower()
    if encoding not in ("", "identity"):
        raise GuardOutputError(f"Llama Guard server {url} answered a {encoding!r}-encoded body (identity asked)")
    declared = response.headers.get("content-length")
    if declared is not None and declared.strip().isdigit() and int(declared) > limit:
        raise GuardOutputError(f"Llama Guard server {url} announced {int(declared)} bytes, over the {limit}-byte limit")
    chunks: list[bytes] = []
    size = 0
    for chunk in response.iter_raw():
        size += len(chunk)
        if size > limit:
            raise GuardOutputError(f"Llama Guard server {url} answered more than the {limit}-byte limit")
        chunks.append(chunk)
        budget.left(url)
    return b"".join(chunks)


def strict_json(raw: bytes, url: str) -> Any:
    """The JSON value of `raw`; a duplicated key in any object, NaN / Infinity or a number beyond a float's range is a
    GuardOutputError, as is anything that is not JSON."""
    try:
        return json.loads(raw, object_pairs_hook=_unique_keys, parse_constant=_no_constant, parse_float=_finite)
    except _StrictJSONError as exc:
        raise GuardOutputError(f"Llama Guard server {url} answered ambiguous JSON: {exc}") from None
    except (ValueError, RecursionError) as exc:
        shown = raw[:200].decode("utf-8", "replace")
        raise GuardOutputError(f"Llama Guard server {url} answered non-JSON: {shown!r}") from exc


def top_logprobs(choice: dict[str, Any]) -> dict[str, float]:
    """The first position's top log-probabilities, each a finite number <= 0."""
    logprobs = choice.get("logprobs")
    top = logprobs.get("top_logprobs") if isinstance(logprobs, dict) else None
    if not isinstance(top, list) or not top or not isinstance(top[0], dict) or not top[0]:
        raise GuardOutputError(f"Llama Guard server answered without top log-probabilities: {str(choice)[:200]!r}")
    return {key: logprob(value, key) for key, value in top[0].items()}


def logprob(value: Any, key: str) -> float:
    """A log-probability: a finite number <= 0 (NaN, infinities, positives and non-numbers are guard errors)."""
    try:
        number = float(value) if isinstance(value, int | float) and not isinstance(value, bool) else math.nan
    except OverflowError:
        number = math.nan
    if not (math.isfinite(number) and number <= 0.0):
        raise GuardOutputError(f"Llama Guard server gave log-probability {str(value)[:40]!r} for {key!r}")
    return number


def check_sum(top: Mapping[str, float], unsafe_beyond_top: float | None = None) -> None:
    """The probabilities of the top log-probabilities (and of `unsafe`, when it came from another request because the
    top lacks it) sum to at most 1; and an `unsafe` absent from a full top list is no more likely than the least
    listed (else it would have been listed). Both within PROBABILITY_TOLERANCE; else a GuardOutputError."""
    extra = math.exp(unsafe_beyond_top) if unsafe_beyond_top is not None else 0.0
    total = math.fsum(math.exp(v) for v in top.values()) + extra
    if total > 1.0 + PROBABILITY_TOLERANCE:
        what = "top log-probabilities" if unsafe_beyond_top is None else f"top and P(unsafe)={extra:.4f}"
        raise GuardOutputError(f"Llama Guard server's log-probabilities are incoherent: {what} sum to {total:.4f} > 1")
    full = unsafe_beyond_top is not None and len(top) >= TOP_LOGPROBS
    if full and extra > math.exp(min(top.values())) + PROBABILITY_TOLERANCE:
        raise GuardOutputError(
            f"Llama Guard server's log-probabilities are incoherent: P(unsafe)={extra:.4f} is above its top "
            f"{TOP_LOGPROBS}, which do not list it"
        )


def check_generated(
    choice: dict[str, Any], names: Mapping[str, int], by_id: Mapping[int, float], token_id: Callable[[str], int | None]
) -> Literal["safe", "unsafe"]:
    """The one token the server generated (`choice["text"]`), which must agree with the log-probabilities it gave.

    Agree means: the text is exactly `safe` or `unsafe` (one token was asked for, so `unsafe\\nS1` or ` safe` do not
    agree); that token is among the top log-probabilities (`by_id`, keyed by the ids `names` gives) with the highest
    value of all (greedy decoding picks it; a tie is allowed); and where the server also lists the generated token
    (`tokens`) and its log-probability (`token_logprobs`), they name the same token and the same value (within 1e-4).
    The threshold is not part of it: it is the policy's (`model answered unsafe but P(unsafe) < threshold` stays an
    allow, as in process). Anything else is a GuardOutputError."""
    text = choice.get("text")
    if text not in ("safe", "unsafe"):
        raise GuardOutputError(
            f"Llama Guard server generated {str(text)[:80]!r} as its one token: neither 'safe' nor 'unsafe'"
        )
    generated_id = names[text]
    value = by_id.get(generated_id)
    best = max(top_logprobs(choice).values())
    if value is None or value < best:
        shown = "not among them" if value is None else f"P={math.exp(value):.4f} below the top"
        raise GuardOutputError(f"Llama Guard server generated {text!r} but its log-probabilities disagree ({shown})")
    logprobs = choice.get("logprobs") or {}
    tokens, token_logprobs = logprobs.get("tokens"), logprobs.get("token_logprobs")
    if tokens is not None and not isinstance(tokens, list):
        raise GuardOutputError(f"Llama Guard server gave tokens {str(tokens)[:80]!r}, not a list")
    if tokens and (not isinstance(tokens[0], str) or token_id(tokens[0]) != generated_id):
        raise GuardOutputError(f"Llama Guard server generated {text!r} but lists {str(tokens[0])[:80]!r}")
    if token_logprobs is not None and not isinstance(token_logprobs, list):
        raise GuardOutputError(f"Llama Guard server gave token_logprobs {str(token_logprobs)[:80]!r}, not a list")
    if token_logprobs and abs(logprob(token_logprobs[0], text) - value) > 1e-4:
        raise GuardOutputError(
            f"Llama Guard server gave {text!r} log-probability {token_logprobs[0]!r} and {value!r} in its top"
        )
    return text


class _StrictJSONError(Exception):
    """Not a ValueError, so json's own error handling cannot swallow or rewrap it."""


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    data: dict[str, Any] = {}
    for key, value in pairs:
        if key in data:
            raise _StrictJSONError(f"duplicate key {key[:80]!r} in one object")
        data[key] = value
    return data


def _no_constant(name: str) -> Any:
    raise _StrictJSONError(f"non-standard constant {name}")


def _finite(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise _StrictJSONError(f"number {text[:40]} is beyond a float's range")
    return value


__all__ = [
    "MAX_RESPONSE_BYTES",
    "PROBABILITY_TOLERANCE",
    "PROMPT_LOGPROB_BYTES",
    "TOP_LOGPROBS",
    "Budget",
    "GuardServerError",
    "check_generated",
    "check_sum",
    "logprob",
    "read_body",
    "strict_json",
    "top_logprobs",
]

"""Llama Guard 3 on a remote OpenAI-compatible server (vLLM): `models.llama_guard.backend: openai`.

The same exact prompt as in-process (`guards.llama_guard.prompt`), sent as token ids to `/v1/completions` with
`max_tokens: 1, logprobs: 20, temperature: 0`: one forward pass on the server. P(unsafe) is read from the first
token's top log-probabilities; the categories are decoded with a second short request (prompt + `unsafe`, greedy, up
to the stop token) only when the score reaches the threshold. Verdicts, thresholds and exclusions are the in-process
guard's (`guards.llama_guard.guard.decide`).

Fail-closed: a server that is down, slow, answers an HTTP error or anything but the expected JSON, or whose first
token is neither `safe` nor `unsafe`, raises a `GuardError`, which the pipeline turns into a guard error verdict
(block by default). Never "safe". When `safe` ranks first and `unsafe` is not among the top 20 (a very confident
guard), P(unsafe) is not guessed from the tail: its exact value comes from vLLM's `prompt_logprobs` for the prompt
followed by `unsafe`; a server that cannot give it is a guard error too. Also guard errors
(`guards.llama_guard.remote_io`): JSON with a key twice in any object, or NaN / Infinity; a body over
`MAX_RESPONSE_BYTES`; a check (model discovery, a pending probe and every request) past its one `timeout_s` budget;
log-probabilities that are not finite numbers <= 0, list `safe` or `unsafe` twice, or whose probabilities sum above
1; a generated text that disagrees with them (`check_generated`).

Prompts go as token ids. A server that refuses ids (`prompt_as: auto` falls back) gets the prompt as text only
through `model.backends.openai_backend.prompt_text_for_server`, which refuses any prompt whose content holds
special-token text: untrusted text never becomes a control token on the server either.

Blocking I/O (httpx's sync client) on the pipeline's worker thread: the connection pool then survives the event
loops that `Assistant.run` starts and stops per call.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Sequence
from dataclasses import replace
from typing import Any, Literal

from guards.errors import GuardError, GuardOutputError
from guards.llama_guard.prompt import (
    PromptCategory,
    Turn,
    as_turn,
    checked_role,
    encode_segments,
    framing_for,
    prompt_categories,
    prompt_segments,
)
from guards.llama_guard.remote_io import (
    MAX_RESPONSE_BYTES,
    PROMPT_LOGPROB_BYTES,
    TOP_LOGPROBS,
    Budget,
    GuardServerError,
    check_generated,
    check_sum,
    logprob,
    read_body,
    strict_json,
    top_logprobs,
)
from guards.llama_guard.result import MAX_CATEGORY_TOKENS, LlamaGuardResult, Scoring, decide
from guards.policy.categories import LlamaGuardVariant
from model.backends.errors import BackendError
from model.backends.openai_backend import normalize_base_url, prompt_text_for_server
from model.telemetry import annotate, end
from model.telemetry.propagation import client_span, outgoing_headers
from model.tokenizer import get_tokenizer

PromptAs = Literal["auto", "ids", "text"]
# Stop tokens a server may leave in the text it returns: Llama 3's and Llama 4's (neither spelling contains another).
STOP_TOKENS = ("<|eot_id|>", "<|eom_id|>", "<|end_of_text|>", "<|eot|>", "<|eom|>")
_TOKEN_ID_PREFIX = "token_id:"  # vLLM's key form with return_tokens_as_token_ids


class RemoteLlamaGuard:
    """Llama Guard scored by a remote server (`variant` picks Llama Guard 3's or Llama Guard 4's prompt framing and
    tokenizer). Thread-safe: checks share one pooled HTTP client."""

    def __init__(
        self,
        base_url: str,
        *,
        model: str | None = None,
        api_key: str | None = None,
        categories: Sequence[PromptCategory] | None = None,
        excluded: Sequence[str] = (),
        threshold: float = 0.5,
        timeout_s: float = 30.0,
        connect_timeout_s: float = 5.0,
        prompt_as: PromptAs = "auto",
        tokenizer: Any = None,
        variant: LlamaGuardVariant = "8b",
    ) -> None:
        if not 0.0 <= threshold <= 1.0:
            raise ValueError(f"threshold must be within 0..1, got {threshold}")
        if prompt_as not in ("auto", "ids", "text"):
            raise ValueError(f"prompt_as must be auto, ids or text, got {prompt_as!r}")
        try:
            self.base_url = normalize_base_url(base_url)
        except BackendError as exc:
            raise GuardError(f"models.llama_guard.base_url: {exc}") from exc
        self.model = model
        self.framing = framing_for(variant)
        self.tokenizer = tokenizer or get_tokenizer(family=self.framing.family)
        self.categories = tuple(categories) if categories is not None else prompt_categories(variant)
        self.excluded = frozenset(excluded)
        self.threshold = threshold
        self.prompt_as: PromptAs = prompt_as
        self.source = f"openai:{self.base_url}" + (f"#{model}" if model else "")
        tok = self.tokenizer
        self.safe_id = _single_id(tok, "safe")
        self.unsafe_id = _single_id(tok, "unsafe")
        self.stop_ids = tuple(tok.stop_ids)  # the family's end of text, end of message, end of turn
        self.timeout_s = timeout_s  # the budget of one whole check (or probe), every request in it included
        self._connect_timeout_s = connect_timeout_s
        self._probe_pending = False  # a probe failed: the next check probes again, inside its own budget
        self._headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._send_extras = True  # vLLM's stop_token_ids / return_tokens_as_token_ids, dropped if refused
        self._client: Any = None
        self._client_lock = threading.Lock()

    # --- public API (the in-process guard's) ------------------------------------------------------------------

    def check(self, turns: Sequence[Turn]) -> LlamaGuardResult:
        """Verdict for the last turn of `turns`, with the earlier turns as context."""
        checked_role(turns)
        ids = self.prompt_ids(turns)
        started = time.perf_counter()
        budget = Budget(self.timeout_s)  # one deadline for everything below: probe, model discovery, requests
        if self._probe_pending:
            self.probe(budget)
        model = self._resolve_model(budget)
        first = self._complete(model, ids, budget, max_tokens=1, logprobs=TOP_LOGPROBS)
        unsafe_logprob, verdict, top = self._first_token(first)
        if unsafe_logprob is None:  # `safe` ranks first and `unsafe` below the top 20: ask for its exact value
            unsafe_logprob = self._exact_logprob(model, ids, self.unsafe_id, budget)
            check_sum(top, unsafe_beyond_top=unsafe_logprob)
        score = math.exp(unsafe_logprob)
        text: str = verdict
        if score >= self.threshold:
            more = self._complete(model, [*ids, self.unsafe_id], budget, max_tokens=MAX_CATEGORY_TOKENS, logprobs=None)
            text = "unsafe" + _continuation_text(more)
        result = decide(score, verdict, text, Scoring("forward", len(ids)), self.threshold, self.excluded)
        return replace(result, latency_ms=(time.perf_counter() - started) * 1000)

    def check_text(
        self, text: str, *, role: str = "user", conversation: Sequence[tuple[str, str]] = ()
    ) -> LlamaGuardResult:
        """`conversation` is earlier (role, content) pairs; roles user / assistant / agent."""
        return self.check([as_turn(r, c) for r, c in conversation] + [as_turn(role, text)])

    def prompt_ids(self, turns: Sequence[Turn]) -> list[int]:
        """The exact ids sent (the same as the in-process guard scores)."""
        tok = self.tokenizer
        return encode_segments(prompt_segments(turns, self.categories, self.framing), tok.encode, tok.special_id)

    def probe(self, budget: Budget | None = None) -> None:
        """Ask the server which models it serves: unreachable, or not serving ours, is a GuardError now (at load,
        so `assistant serve`'s /readyz reports it) rather than at the first check. Within `budget` (a check's) or a
        `timeout_s` of its own; until a probe succeeds, every check probes first, inside the check's budget."""
        self._probe_pending = True
        served = self._served(budget or Budget(self.timeout_s))
        if self.model is None:
            if not served or not isinstance(served[0], str):
                raise GuardOutputError(f"{self.base_url}/models lists no model; set models.llama_guard.source")
            self.model = served[0]
        elif self.model not in served:
            raise GuardError(
                f"the Llama Guard server {self.base_url} serves {served}, not {self.model!r} "
                "(models.llama_guard.source must be the server's model name)"
            )
        self._probe_pending = False

    def close(self) -> None:
        with self._client_lock:
            if self._client is not None:
                self._client.close()
                self._client = None

    # --- HTTP --------------------------------------------------------------------------------------------------

    def _http(self) -> Any:
        import httpx

        with self._client_lock:
            if self._client is None:
                timeout = httpx.Timeout(self.timeout_s, connect=self._connect_timeout_s)
                headers = {**self._headers, "Accept-Encoding": "identity"}  # the body limit counts real bytes
                self._client = httpx.Client(timeout=timeout, headers=headers, trust_env=False)
            return self._client

    def _served(self, budget: Budget) -> list[Any]:
        data = self._call("GET", "/models", None, budget)
        listed = data.get("data")
        return [m.get("id") for m in listed if isinstance(m, dict)] if isinstance(listed, list) else []

    def _resolve_model(self, budget: Budget) -> str:
        if self.model:
            return self.model
        served = self._served(budget)
        if not served or not isinstance(served[0], str):
            raise GuardOutputError(f"{self.base_url}/models lists no model; set models.llama_guard.source")
        self.model = served[0]
        return self.model

    def _complete(
        self,
        model: str,
        ids: list[int],
        budget: Budget,
        *,
        max_tokens: int,
        logprobs: int | None,
        prompt_logprobs: int | None = None,
    ) -> dict[str, Any]:
        """One `/v1/completions` call; the first choice. Ids first; text only as `prompt_as` allows."""
        for _ in range(3):  # at most: drop vLLM's extra fields, switch to the guarded text form
            prompt: list[int] | str = ids
            if self.prompt_as == "text":
                prompt = self._prompt_text(ids)
            body: dict[str, Any] = {"model": model, "prompt": prompt, "max_tokens": max_tokens, "temperature": 0.0}
            if logprobs is not None:
                body["logprobs"] = logprobs
            if prompt_logprobs is not None:
                body["prompt_logprobs"] = prompt_logprobs  # vLLM's extension; no other server answers it
            if self._send_extras:
                body["stop_token_ids"] = list(self.stop_ids)
                if logprobs is not None:
                    body["return_tokens_as_token_ids"] = True  # vLLM: keys `token_id:N`, no detokenizer guesswork
            limit = MAX_RESPONSE_BYTES + (PROMPT_LOGPROB_BYTES * len(ids) if prompt_logprobs is not None else 0)
            try:
                data = self._call("POST", "/completions", body, budget, limit)
            except _Rejected as rejected:
                detail = rejected.detail.lower()
                if self._send_extras and ("extra" in detail or "unexpected field" in detail):
                    self._send_extras = False
                    continue
                if self.prompt_as == "auto" and "prompt" in detail:
                    self.prompt_as = "text"  # e.g. "prompt must be a string": the guarded text form from now on
                    continue
                raise GuardServerError(
                    f"Llama Guard server {self.base_url}/completions answered HTTP {rejected.status}: "
                    f"{rejected.detail[:300]}"
                ) from None
            choices = data.get("choices")
            if not isinstance(choices, list) or not choices or not isinstance(choices[0], dict):
                raise GuardOutputError(f"Llama Guard server answered no choices: {str(data)[:200]!r}")
            return choices[0]
        raise GuardServerError(f"Llama Guard server {self.base_url}/completions kept rejecting the request")

    def _prompt_text(self, ids: list[int]) -> str:
        try:
            return prompt_text_for_server(ids, self.tokenizer)
        except BackendError as exc:
            raise GuardError(f"Llama Guard server takes text prompts only: {exc}") from exc

    def _call(
        self, method: str, path: str, body: dict[str, Any] | None, budget: Budget, limit: int = MAX_RESPONSE_BYTES
    ) -> dict[str, Any]:
        """One request within what is left of `budget` (connect, write, read and the body's whole reading), its body
        at most `limit` bytes, parsed as strict JSON."""
        import httpx

        url = self.base_url + path
        left = budget.left(url)
        timeout = httpx.Timeout(left, connect=min(self._connect_timeout_s, left))
        call = client_span(method, url)  # the guard server's own spans join the turn's trace
        failure: BaseException | None = None
        try:
            with self._http().stream(method, url, json=body, timeout=timeout,
                                     headers=outgoing_headers(call)) as response:
                status = response.status_code
                annotate(call, {"http.response.status_code": status})
                raw = read_body(response, url, limit, budget)
        except httpx.TimeoutException as exc:
            failure = exc
            raise GuardServerError(f"Llama Guard server {url} timed out ({type(exc).__name__})") from exc
        except httpx.HTTPError as exc:
            failure = exc
            raise GuardServerError(
                f"cannot reach the Llama Guard server at {url} ({type(exc).__name__}: {exc or 'no detail'}); start "
                "it or fix models.llama_guard.base_url"
            ) from exc
        except BaseException as exc:  # the body over its limit or its budget
            failure = exc
            raise
        finally:
            end(call, error=failure)
        text = raw.decode("utf-8", "replace")
        if status in (400, 422):
            raise _Rejected(status, text)
        if status != 200:
            hint = " (check models.llama_guard.api_key_env)" if status in (401, 403) else ""
            raise GuardServerError(f"Llama Guard server {url} answered HTTP {status}{hint}: {text[:300]}")
        data = strict_json(raw, url)
        if not isinstance(data, dict):
            raise GuardOutputError(f"Llama Guard server {url} answered {type(data).__name__}, not an object")
        if "error" in data and "choices" not in data:
            raise GuardServerError(f"Llama Guard server {url} reported an error: {str(data['error'])[:300]}")
        return data

    # --- reading the answer ------------------------------------------------------------------------------------

    def _first_token(self, choice: dict[str, Any]) -> tuple[float | None, Literal["safe", "unsafe"], dict[str, float]]:
        """log P(unsafe) (None when `unsafe` ranks below the top log-probabilities), the model's own first token
        and the top log-probabilities, from the first position. Each value must be a finite log-probability, `safe`
        and `unsafe` listed once each, the probabilities must sum to at most 1, and the generated text must agree."""
        top = top_logprobs(choice)
        by_id: dict[int, float] = {}
        for key, value in top.items():
            token_id = self._token_id(key)
            if token_id in (self.safe_id, self.unsafe_id):
                if token_id in by_id:
                    raise GuardOutputError(f"Llama Guard server listed token {token_id} twice (as {key!r} too)")
                by_id[token_id] = value
        best = max(top.items(), key=lambda kv: kv[1])[0]
        if self._token_id(best) not in (self.safe_id, self.unsafe_id):
            raise GuardOutputError(f"Llama Guard's first token is {best!r}, neither 'safe' nor 'unsafe'")
        check_sum(top)
        names = {"safe": self.safe_id, "unsafe": self.unsafe_id}
        return by_id.get(self.unsafe_id), check_generated(choice, names, by_id, self._token_id), top

    def _exact_logprob(self, model: str, ids: list[int], token_id: int, budget: Budget) -> float:
        """log P(token_id | ids) from the server's prompt log-probabilities (vLLM's `prompt_logprobs`) of
        ids + [token_id]: for a `safe` so confident that `unsafe` is not among the top log-probabilities."""
        choice = self._complete(model, [*ids, token_id], budget, max_tokens=1, logprobs=None, prompt_logprobs=0)
        entries = choice.get("prompt_logprobs")
        last = entries[-1] if isinstance(entries, list) and entries else None
        value = last.get(str(token_id)) if isinstance(last, dict) else None
        if isinstance(value, dict):
            value = value.get("logprob")
        if value is None:
            raise GuardOutputError(
                f"Llama Guard server's top {TOP_LOGPROBS} log-probabilities lack 'unsafe' and it gave no prompt "
                "log-probability for it: not a Llama Guard 3 model on vLLM, or the wrong prompt"
            )
        return logprob(value, "unsafe (prompt_logprobs)")

    def _token_id(self, key: str) -> int | None:
        """`token_id:N` (vLLM with return_tokens_as_token_ids), else the token's text: only `safe` and `unsafe`
        matter, and each is exactly one token of the Llama 3 vocabulary."""
        if key.startswith(_TOKEN_ID_PREFIX):
            try:
                return int(key[len(_TOKEN_ID_PREFIX) :])
            except ValueError as exc:
                raise GuardOutputError(f"Llama Guard server gave a malformed token key {key!r}") from exc
        return {"safe": self.safe_id, "unsafe": self.unsafe_id}.get(key, -1)


class _Rejected(Exception):
    def __init__(self, status: int, detail: str) -> None:
        super().__init__(f"HTTP {status}")
        self.status = status
        self.detail = detail


def _continuation_text(choice: dict[str, Any]) -> str:
    """The categories line after the forced `unsafe`; no stop within the limit gives text that will not parse."""
    text = choice.get("text")
    if not isinstance(text, str):
        raise GuardOutputError(f"Llama Guard server answered without text: {str(choice)[:200]!r}")
    if choice.get("finish_reason") != "stop":
        return text + "<no stop token>"
    for stop in STOP_TOKENS:  # a server that keeps special tokens in the text
        text = text.split(stop, 1)[0]
    return text


def _single_id(tokenizer: Any, text: str) -> int:
    ids = tokenizer.encode(text)
    if len(ids) != 1:
        raise GuardError(f"the tokenizer splits {text!r} into {len(ids)} tokens; not a Llama tokenizer")
    return int(ids[0])

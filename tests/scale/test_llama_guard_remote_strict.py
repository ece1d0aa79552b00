"""The remote Llama Guard reads its server's answer strictly (issue 25): answers that Python's json or a lenient reading
would take as "allow" are guard errors instead. Each hole has a crafted answer that fails closed and a benign twin
that still allows. The server is the real HTTP stand-in (tests/scale/completions_server.py) with the tiny trained
guard behind it; `craft` rewrites its real answers, nothing of the guard is mocked."""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from guards.errors import GuardOutputError
from guards.llama_guard.guard import LlamaGuard
from guards.llama_guard.remote import GuardServerError, RemoteLlamaGuard
from guards.llama_guard.remote_io import MAX_RESPONSE_BYTES
from guards.policy import parse_policy_text
from guards.runtime.pipeline import GuardPipeline
from tests.scale.completions_server import CompletionsModel, CompletionsServer, running
from tests.scale.test_llama_guard_remote import CASES, remote

SAFE, UNSAFE = "token_id:19193", "token_id:39257"  # `safe` and `unsafe` in the Llama 3 vocabulary


@pytest.fixture(scope="module")
def guard_dir(tiny_guard_dirs: dict[str, Path]) -> Path:
    return tiny_guard_dirs["llama-guard"]


@pytest.fixture(scope="module")
def server(guard_dir: Path) -> Iterator[CompletionsServer]:
    with running(CompletionsModel(guard_dir)) as srv:
        yield srv


@pytest.fixture(scope="module")
def local(guard_dir: Path) -> LlamaGuard:
    return LlamaGuard.load(guard_dir, dtype="float32")


@pytest.fixture
def srv(server: CompletionsServer) -> Iterator[CompletionsServer]:
    yield server
    server.mode, server.craft, server.drip_s, server.no_length = "ok", None, 0.0, False
    server.models_delay_s = server.completions_delay_s = 0.0
    server.requests.clear()


def test_token_keys_are_the_guards() -> None:
    from model.tokenizer import get_tokenizer

    tok = get_tokenizer()
    assert (f"token_id:{tok.encode('safe')[0]}", f"token_id:{tok.encode('unsafe')[0]}") == (SAFE, UNSAFE)


# --- crafting answers --------------------------------------------------------------------------------------------


class Pairs(list):
    """A JSON object written as (key, value) pairs, so a key may appear twice."""


class Raw(str):
    """JSON text written as is (numbers Python's json would not write)."""


def dump(value: Any) -> str:
    if isinstance(value, Raw):
        return str(value)
    if isinstance(value, dict):
        value = Pairs(value.items())
    if isinstance(value, Pairs):
        return "{" + ", ".join(f"{json.dumps(k)}: {dump(v)}" for k, v in value) + "}"
    if isinstance(value, list):
        return "[" + ", ".join(dump(v) for v in value) + "]"
    return json.dumps(value)


Craft = Callable[[dict[str, Any]], Any]


def on_first_token(edit: Craft) -> Callable[..., tuple[int, Any]]:
    """A `craft` that rewrites only the answer scoring the first token (the request with top log-probabilities)."""

    def craft(path: str, request: dict[str, Any] | None, status: int, payload: Any) -> tuple[int, Any]:
        if status == 200 and request is not None and request.get("logprobs"):
            edited = edit(payload)
            return status, dump(edited).encode() if isinstance(edited, dict | Pairs) else edited
        return status, payload

    return craft


def on_exact(edit: Craft) -> Callable[..., tuple[int, Any]]:
    """A `craft` that rewrites only the answer giving `unsafe`'s exact log-probability (vLLM's prompt_logprobs)."""

    def craft(path: str, request: dict[str, Any] | None, status: int, payload: Any) -> tuple[int, Any]:
        if status == 200 and request is not None and request.get("prompt_logprobs") is not None:
            return status, edit(payload)
        return status, payload

    return craft


def choice(payload: dict[str, Any]) -> dict[str, Any]:
    return payload["choices"][0]


def top(payload: dict[str, Any]) -> dict[str, float]:
    return choice(payload)["logprobs"]["top_logprobs"][0]


def read_as_safe(payload: dict[str, Any]) -> dict[str, Any]:
    """The choice of an `unsafe` answer turned into a coherent, confident `safe` (the two values swapped)."""
    old = top(payload)
    swapped = {**old, SAFE: old[UNSAFE], UNSAFE: old[SAFE]}
    return {**choice(payload), "text": "safe", "logprobs": {**choice(payload)["logprobs"], "top_logprobs": [swapped]}}


def check(srv: CompletionsServer, name: str, **kwargs: Any) -> Any:
    return remote(srv.url, **kwargs).check(CASES[name])


# --- 1. duplicate keys -------------------------------------------------------------------------------------------


def duplicated(where: str) -> Craft:
    """The real `unsafe` answer first, then the same keys again reading `safe` (Python's json keeps the last)."""

    def edit(payload: dict[str, Any]) -> Pairs:
        real, safe = choice(payload), read_as_safe(payload)
        if where == "top_logprobs":  # `unsafe` (and `safe`) listed twice in the one top_logprobs object
            pairs = Pairs([*top(payload).items(), (UNSAFE, top(payload)[SAFE]), (SAFE, top(payload)[UNSAFE])])
            logprobs = {**real["logprobs"], "top_logprobs": [pairs]}
            return Pairs({**payload, "choices": [{**real, "text": "safe", "logprobs": logprobs}]}.items())
        if where == "choice":  # `text` and `logprobs` twice in the choice
            pairs = Pairs([*real.items(), ("text", "safe"), ("logprobs", safe["logprobs"])])
            return Pairs({**payload, "choices": [pairs]}.items())
        return Pairs([*payload.items(), ("choices", [safe])])  # `choices` twice in the body

    return edit


@pytest.mark.parametrize("where", ["top_logprobs", "choice", "body"])
def test_duplicate_keys_are_a_guard_error(srv: CompletionsServer, where: str) -> None:
    srv.craft = on_first_token(duplicated(where))
    with pytest.raises(GuardOutputError, match="duplicate key"):
        check(srv, "unsafe-user")


def test_the_same_answer_without_duplicates_allows(srv: CompletionsServer) -> None:
    """Twin: the `safe` reading alone is a coherent answer, and allows (keys repeat across objects, never within)."""
    srv.craft = on_first_token(lambda payload: {**payload, "choices": [read_as_safe(payload)]})
    result = check(srv, "unsafe-user")
    assert not result.unsafe and result.model_verdict == "safe" and result.score < 1e-6


# --- 2. generated text against the log-probabilities --------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "fields", "match"),
    [
        ("safe-user", {"text": "unsafe\nS1"}, "neither 'safe' nor 'unsafe'"),  # was read as allow
        ("safe-user", {"text": "unsafe"}, "disagree"),  # was read as allow
        ("unsafe-user", {"text": "safe"}, "disagree"),
        ("safe-user", {"text": " safe"}, "neither 'safe' nor 'unsafe'"),
        ("safe-user", {"logprobs": {"tokens": [UNSAFE]}}, "lists"),  # was read as allow
        ("safe-user", {"logprobs": {"token_logprobs": [-5.0]}}, "log-probability -5.0"),  # was read as allow
    ],
    ids=["unsafe-S1-over-safe", "unsafe-over-safe", "safe-over-unsafe", "space-safe", "tokens", "token_logprobs"],
)
def test_text_that_disagrees_with_the_logprobs_is_a_guard_error(
    srv: CompletionsServer, name: str, fields: dict[str, Any], match: str
) -> None:
    srv.craft = on_first_token(lambda payload: merged(payload, fields))
    with pytest.raises(GuardOutputError, match=match):
        check(srv, name)


def merged(payload: dict[str, Any], fields: dict[str, Any]) -> dict[str, Any]:
    logprobs = {**choice(payload)["logprobs"], **fields.get("logprobs", {})}
    text = fields.get("text", choice(payload)["text"])
    return {**payload, "choices": [{**choice(payload), "text": text, "logprobs": logprobs}]}


@pytest.mark.parametrize("name", ["safe-user", "unsafe-user"])
def test_text_tokens_and_logprobs_that_agree_decide_as_before(
    srv: CompletionsServer, local: LlamaGuard, name: str
) -> None:
    """Twin: vLLM's full answer (tokens and token_logprobs of the generated token) gives the in-process verdict."""

    def full(payload: dict[str, Any]) -> dict[str, Any]:
        key = SAFE if choice(payload)["text"] == "safe" else UNSAFE
        return merged(payload, {"logprobs": {"tokens": [key], "token_logprobs": [top(payload)[key]]}})

    srv.craft = on_first_token(full)
    got, want = check(srv, name), local.check(CASES[name])
    assert (got.unsafe, got.categories, got.model_verdict) == (want.unsafe, want.categories, want.model_verdict)


# --- 3. incoherent log-probabilities ------------------------------------------------------------------------------


def with_unsafe(value: Any) -> Craft:
    """`unsafe` listed in the top log-probabilities of a `safe` answer with `value` (written as is)."""
    return lambda payload: merged(payload, {"logprobs": {"top_logprobs": [{**top(payload), UNSAFE: value}]}})


@pytest.mark.parametrize(
    ("craft", "match"),
    [
        (with_unsafe(math.log(0.45)), "sum to 1.4"),  # P(safe) 0.96 + P(unsafe) 0.45: was an allow (0.45 < 0.5)
        (with_unsafe(Raw("-Infinity")), "non-standard constant -Infinity"),  # was an allow (P = 0)
        (with_unsafe(Raw("-1e999")), "beyond a float's range"),  # was an allow (P = 0)
        (with_unsafe(Raw("NaN")), "non-standard constant NaN"),
        (with_unsafe(Raw("Infinity")), "non-standard constant Infinity"),
        (with_unsafe(0.5), "log-probability '0.5'"),
        (with_unsafe(True), "log-probability 'True'"),
        (lambda p: merged(p, {"logprobs": {"top_logprobs": [{**top(p), "safe": -30.0}]}}), "twice"),
    ],
    ids=["sum-above-1", "-Infinity", "-1e999", "NaN", "Infinity", "positive", "bool", "safe-listed-twice"],
)
def test_incoherent_logprobs_are_a_guard_error(srv: CompletionsServer, craft: Craft, match: str) -> None:
    srv.craft = on_first_token(craft)
    with pytest.raises(GuardOutputError, match=match):
        check(srv, "safe-user")


def exact_unsafe(probability: float) -> Craft:
    def edit(payload: dict[str, Any]) -> dict[str, Any]:
        last = choice(payload)["prompt_logprobs"][-1]
        (key,) = last
        last[key] = {**last[key], "logprob": math.log(probability)}
        return payload

    return edit


@pytest.mark.parametrize(("probability", "match"), [(0.3, "sum to 1.2"), (0.03, "above its top 20")])
def test_incoherent_exact_unsafe_logprob_is_a_guard_error(
    srv: CompletionsServer, probability: float, match: str
) -> None:
    """`unsafe` absent from the top 20 yet, by the second request, likelier than the top sum allows or than the
    least of the 20: both were an allow (P(unsafe) < 0.5)."""
    srv.craft = on_exact(exact_unsafe(probability))
    with pytest.raises(GuardOutputError, match=match):
        check(srv, "safe-user")


def test_coherent_logprobs_still_allow(srv: CompletionsServer) -> None:
    """Twin: vLLM's floor (-9999.0) for a token it cannot produce, and the real answers (their top 20 sum to about
    0.96; `unsafe`'s exact value ties with the least of the 20), allow."""
    srv.craft = on_first_token(with_unsafe(-9999.0))
    assert not check(srv, "safe-user").unsafe
    srv.craft = None
    result = check(srv, "safe-user")
    assert not result.unsafe and 0 < result.score < 1e-6


# --- 4. bounded body ----------------------------------------------------------------------------------------------


def padded(size: int) -> Craft:
    return lambda payload: {**payload, "padding": "x" * size}


@pytest.mark.parametrize("no_length", [False, True], ids=["content-length", "until-close"])
def test_a_body_over_the_limit_is_a_guard_error(srv: CompletionsServer, no_length: bool) -> None:
    """A harmless field padded past the limit: read to the end and allowed before; now the read stops there."""
    srv.craft, srv.no_length = on_first_token(padded(MAX_RESPONSE_BYTES + 4096)), no_length
    with pytest.raises(GuardOutputError, match=f"{MAX_RESPONSE_BYTES}-byte limit"):
        check(srv, "safe-user")


@pytest.mark.parametrize("no_length", [False, True], ids=["content-length", "until-close"])
def test_a_body_under_the_limit_allows(srv: CompletionsServer, no_length: bool) -> None:
    srv.craft, srv.no_length = on_first_token(padded(MAX_RESPONSE_BYTES - 8192)), no_length
    assert not check(srv, "safe-user").unsafe


# --- 5. one time budget per check, model discovery and probe included ---------------------------------------------

# A coherent, confident `safe` answer that needs no second request (the stand-in's prompt_logprobs for the exact
# P(unsafe) of a real `safe` costs a second or more of CPU): the timings below are the server's delays.
QUICK_SAFE = on_first_token(lambda payload: {**payload, "choices": [read_as_safe(payload)]})


@pytest.mark.parametrize(("delay_s", "fails"), [(0.6, True), (0.05, False)])
def test_model_discovery_shares_the_checks_budget(srv: CompletionsServer, delay_s: float, fails: bool) -> None:
    """GET /v1/models (no model configured) and the completion, each under the 1 s timeout, together over it: a
    timeout (was an allow after 1.2 s). Twin: both quick, an allow."""
    srv.craft, srv.models_delay_s, srv.completions_delay_s = QUICK_SAFE, delay_s, delay_s
    guard = RemoteLlamaGuard(srv.url, timeout_s=1.0)
    started = time.perf_counter()
    if fails:
        with pytest.raises(GuardServerError, match="timed out"):
            guard.check(CASES["unsafe-user"])
        assert time.perf_counter() - started < 1.5
    else:
        assert not guard.check(CASES["unsafe-user"]).unsafe and guard.model == "tiny-guard"


@pytest.mark.parametrize(("drip_s", "fails"), [(0.1, True), (0.002, False)])
def test_a_slowly_sent_body_counts_against_the_budget(srv: CompletionsServer, drip_s: float, fails: bool) -> None:
    """A body sent 64 bytes at a time, each piece well within the read timeout, about 1.5 s in all: a timeout at the
    0.8 s budget (was an allow after the whole body). Twin: sent within the budget, an allow."""
    srv.craft, srv.drip_s = QUICK_SAFE, drip_s
    guard = remote(srv.url, timeout_s=0.8)
    started = time.perf_counter()
    if fails:
        with pytest.raises(GuardServerError, match="timed out"):
            guard.check(CASES["unsafe-user"])
        assert time.perf_counter() - started < 1.2
    else:
        assert not guard.check(CASES["unsafe-user"]).unsafe


POLICY = """\
version: 1
models:
  llama_guard: {{backend: openai, base_url: "{url}", source: tiny-guard}}
llama_guard: {{timeout_s: 1}}
stages:
  user_input: {{llama_guard: {{enabled: true}}, prompt_guard: {{enabled: false}}}}
"""


def models_fail(path: str, request: Any, status: int, payload: Any) -> tuple[int, Any]:
    return (500, {"error": "starting"}) if path == "/v1/models" else (status, payload)


@pytest.mark.parametrize(("delay_s", "decision"), [(0.6, "block"), (0.05, "allow")])
async def test_a_pending_probe_runs_inside_the_checks_timeout(
    srv: CompletionsServer, delay_s: float, decision: str
) -> None:
    """The first load's probe failed (a guard error); the pipeline's next check probes again, and that probe plus the
    completion must fit the check's 1 s timeout: 0.6 s each is a timeout (was an allow, the probe running before the
    timeout started). Twin: quick, an allow; a later check does not probe again."""
    pipeline = GuardPipeline.from_policy(parse_policy_text(POLICY.format(url=srv.url)), audit=False)
    srv.craft = models_fail
    text = CASES["unsafe-user"][0].content  # answered `safe` (QUICK_SAFE) once the server is up
    first = await pipeline.check("user_input", text)
    assert first.decision == "block" and "HTTP 500" in (first.verdicts[0].error or "")
    srv.craft, srv.models_delay_s, srv.completions_delay_s = QUICK_SAFE, delay_s, delay_s
    result = await pipeline.check("user_input", text)
    assert result.decision == decision
    if decision == "block":
        assert "timed out" in (result.verdicts[0].error or "")
    else:
        srv.models_delay_s = 5.0  # would time out, were it asked again
        assert (await pipeline.check("user_input", text)).decision == "allow"

"""Any OpenAI-compatible server (vLLM, TGI, llama.cpp, `transformers serve`) through raw `/v1/completions`.

We send OUR prompt, never the server's chat template. The safe form is a list of token ids (the completions API
accepts token arrays; vLLM supports it): the server cannot re-tokenize anything. A string prompt would let the
server's tokenizer turn special-token text typed by a user (`<|eot_id|>`) into control tokens, so:

- `prompt_as="ids"`: always send ids; a server that refuses them is an error.
- `prompt_as="text"`: send the decoded prompt, but refuse (BackendError) any prompt whose plain-text parts contain
  special-token text; the leading `<|begin_of_text|>` is dropped because servers add their own BOS.
- `prompt_as="auto"` (default): ids first; if the server rejects a non-string prompt (e.g. `transformers serve`:
  "prompt must be a string"), fall back to the guarded text form for the rest of the session.

Which special tokens the model generated as ids (only those are control tokens) is known from the ids:
vLLM (>= 0.10.2) is asked for them (`return_token_ids: true`) and then the deltas are decoded here from the ids, a
special id becoming a `SpecialToken` delta. A server that sends text only cannot tell `<|python_tag|>` generated as
its id from the same string spelled in ordinary tokens, so all its text is plain: no `<|python_tag|>` call comes
through such a server (JSON, `<function=...>` and `name.call(...)` calls still do). Its stop token is restored from
`finish_reason` as a `SpecialToken` (vLLM's `stop_reason` says which one; otherwise `<|eot_id|>` is assumed), and a
stop-token string at the very end of the text of a call that finished with `stop` is taken as that stop token.
vLLM is asked to keep special tokens in the output (`skip_special_tokens: false`); a server that rejects these fields
(HTTP 422 from `transformers serve`) is retried without them and then strips special tokens from its output.

A constrained call (`GenerationParams.constraint`: structured output, a forced tool call) goes to vLLM's own
structured outputs (`structured_outputs.json`: the constraint as one JSON Schema, no free whitespace). Only vLLM
is trusted with it: a server that rejected vLLM's fields, or answers without token ids, may have ignored the field,
so such a server is refused constrained calls (`constraint_problem`), and a constrained call it answered in text
fails.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import time
from collections.abc import AsyncGenerator, AsyncIterator
from typing import Any, Literal

from model.backends.base import BackendDefaults, BackendStats, GenerationParams, refuse_images
from model.backends.errors import BackendError
from model.completion import SpecialToken
from model.constraint import OutputConstraint
from model.telemetry import annotate, end
from model.telemetry.propagation import client_span, outgoing_headers
from model.tokenizer import get_tokenizer

logger = logging.getLogger(__name__)
BOS_ID = 128_000
FIRST_SPECIAL_ID = 128_000
STOP_STRINGS = ("<|eot_id|>", "<|eom_id|>", "<|end_of_text|>")
_VLLM_EXTRAS = {"skip_special_tokens": False, "spaces_between_special_tokens": False, "return_token_ids": True}
_SPECIAL_TEXT = re.compile(r"<\|[a-z0-9_]+\|>")
PromptAs = Literal["auto", "ids", "text"]


def normalize_base_url(url: str) -> str:
    """`http://host:8000` and `http://host:8000/v1/` both become `http://host:8000/v1`."""
    url = url.rstrip("/")
    if not url.startswith(("http://", "https://")):
        raise BackendError(f"openai backend URL must start with http:// or https://, got {url!r}")
    return url if url.endswith("/v1") else url + "/v1"


def prompt_text_for_server(prompt_ids: list[int], tokenizer: Any) -> str:
    """The prompt as text for a server that only takes strings, refusing smuggled special tokens.

    Every run of ordinary ids (< 128000) is decoded on its own; if one contains text that the server would read as a
    special token, the prompt is refused. Checking runs separately is enough: special-token strings start with `<|`
    and end with `|>` and contain neither inside, so none can straddle a run and a real special token.
    """
    specials = set(tokenizer.special_tokens)
    names = {token_id: name for name, token_id in tokenizer.special_tokens.items()}
    bos, first_special = _bos_and_first_special(tokenizer)
    ids = prompt_ids[1:] if prompt_ids and prompt_ids[0] == bos else prompt_ids
    parts: list[str] = []
    run: list[int] = []
    for token_id in [*ids, None]:
        if token_id is not None and token_id < first_special:
            run.append(token_id)
            continue
        if run:
            text = tokenizer.decode(run)
            found = [m for m in _SPECIAL_TEXT.findall(text) if m in specials]
            if found:
                raise BackendError(
                    f"refusing to send this prompt as text: its content contains special-token text {found[0]!r}, "
                    "which the server's tokenizer would turn into a control token. Use a server that accepts "
                    "token-id prompts (vLLM) with prompt_as=ids, or the transformers backend"
                )
            parts.append(text)
            run = []
        if token_id is not None:
            if token_id not in names:
                raise BackendError(f"prompt contains unknown token id {token_id}")
            parts.append(names[token_id])
    return "".join(parts)


def _default_tokenizer() -> Any:
    return get_tokenizer()


def _bos_and_first_special(tokenizer: Any) -> tuple[int, int]:
    """The family's `<|begin_of_text|>` id and first special id (Llama 3: 128000 both; Llama 4: 200000)."""
    return int(getattr(tokenizer, "bos_id", BOS_ID)), int(getattr(tokenizer, "num_base_tokens", FIRST_SPECIAL_ID))


def _stop_names(tokenizer: Any) -> tuple[str, ...]:
    """The family's stop-token strings (a tokenizer without a spec: Llama 3's)."""
    spec = getattr(tokenizer, "spec", None)
    return tuple(spec.stop_tokens) if spec is not None else STOP_STRINGS


class OpenAIBackend(BackendDefaults):
    """Streams `/v1/completions` over server-sent events with httpx. Nothing to load, no local directory, and no
    speculation (a discarded generation costs the server's time)."""

    def __init__(
        self,
        base_url: str,
        *,
        model: str | None = None,
        api_key: str | None = None,
        api_key_env: str | None = None,
        prompt_as: PromptAs = "auto",
        context_window: int = 8192,
        connect_timeout_s: float = 5.0,
        read_timeout_s: float = 120.0,
        tokenizer: Any = None,
    ) -> None:
        if prompt_as not in ("auto", "ids", "text"):
            raise BackendError(f"prompt_as must be auto, ids or text, got {prompt_as!r}")
        self.base_url = normalize_base_url(base_url)
        self.name = f"openai:{self.base_url}" + (f"#{model}" if model else "")
        self.model = model
        if api_key is None and api_key_env:
            api_key = os.environ.get(api_key_env)
            if not api_key:
                raise BackendError(f"environment variable {api_key_env} (models.main.api_key_env) is not set")
        self._api_key = api_key
        self.prompt_as: PromptAs = prompt_as
        self.context_window = context_window
        self.stats = BackendStats()
        self._timeouts = (connect_timeout_s, read_timeout_s)
        self._tokenizer = tokenizer
        self._send_extras = True  # vLLM's skip_special_tokens etc., dropped once a server rejects them
        self._ids_seen: bool | None = None  # the server sent token ids (vLLM); None: no answer yet
        self._client: Any = None

    # ----- plumbing -----

    def _http(self) -> Any:
        import httpx

        if self._client is None:
            connect, read = self._timeouts
            headers = {"Authorization": f"Bearer {self._api_key}"} if self._api_key else {}
            self._client = httpx.AsyncClient(
                timeout=httpx.Timeout(read, connect=connect), headers=headers, trust_env=False
            )
        return self._client

    async def aclose(self) -> None:
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    def _down(self, exc: Exception) -> BackendError:
        return BackendError(
            f"cannot reach the model server at {self.base_url} ({type(exc).__name__}: {exc or 'no detail'}). "
            "Start it (e.g. `vllm serve meta-llama/Llama-3.1-8B-Instruct` or `transformers serve MODEL_DIR`) "
            "or fix models.main.base_url / the --model URL"
        )

    async def resolve_model(self) -> str:
        """The model name to send: the one in the spec, else the first that `/v1/models` lists."""
        if self.model:
            return self.model
        import httpx

        try:
            response = await self._http().get(f"{self.base_url}/models")
        except httpx.TimeoutException as exc:
            raise BackendError(f"model server at {self.base_url} timed out listing models") from exc
        except httpx.HTTPError as exc:
            raise self._down(exc) from exc
        if response.status_code != 200:
            raise BackendError(f"{self.base_url}/models answered HTTP {response.status_code}: {response.text[:300]}")
        models = [m.get("id") for m in response.json().get("data", []) if isinstance(m, dict)]
        if not models or not models[0]:
            raise BackendError(f"{self.base_url}/models lists no model; name one with openai:URL#MODEL")
        self.model = str(models[0])
        return self.model

    def _body(self, model: str, prompt: list[int] | str, params: GenerationParams) -> dict[str, Any]:
        body: dict[str, Any] = {
            "model": model,
            "prompt": prompt,
            "max_tokens": params.max_new_tokens,
            "temperature": params.temperature,
            "top_p": params.top_p,
            "stream": True,
            # OpenAI's servers (and transformers serve since 5.25) send usage in a stream only when asked
            "stream_options": {"include_usage": True},
        }
        if params.seed is not None:
            body["seed"] = params.seed
        if self._send_extras:
            body.update(_VLLM_EXTRAS)
        if params.constraint is not None:
            schema = params.constraint.json_schema()
            if schema is None or not self._send_extras:
                raise BackendError(self.constraint_problem(params.constraint) or "no structured output")
            # vLLM's own structured outputs: no free whitespace between JSON tokens, as in process
            # (model/backends/grammar.py), or a model may pad with whitespace until max_tokens
            body["structured_outputs"] = {"json": schema, "disable_any_whitespace": True}
        return body

    def _not_vllm(self) -> str:
        return (f"the model server at {self.base_url} is not vLLM (it rejected vLLM's fields or sent no token ids), "
                "so it has no structured output this server can rely on")

    def constraint_problem(self, constraint: OutputConstraint) -> str | None:
        if not self._send_extras or self._ids_seen is False:
            return self._not_vllm()
        if constraint.json_schema() is None:
            return ("the function_tag tool format cannot be passed to a model server's structured output; "
                    "use agent.tool_format json")
        return None

    # ----- streaming -----

    async def stream(self, prompt_ids: list[int], params: GenerationParams) -> AsyncIterator[str]:
        if not prompt_ids:
            raise BackendError("empty prompt")
        refuse_images(self.name, params)  # a text completion request has no place for pixels
        model = await self.resolve_model()
        started = time.perf_counter()
        first = True
        for _attempt in range(3):  # at most: drop extras, switch to text
            use_text = self.prompt_as == "text"
            prompt: list[int] | str = list(prompt_ids)
            if use_text:
                prompt = prompt_text_for_server(prompt_ids, self._tokenizer or _default_tokenizer())
            rejected = None
            async with contextlib.aclosing(self._request(self._body(model, prompt, params), len(prompt_ids))) as items:
                async for kind, value in items:
                    if kind == "rejected":
                        rejected = value
                        break
                    if first:
                        self.stats.last_first_token_s = time.perf_counter() - started
                        first = False
                    yield value
            if rejected is None:
                return
            status, detail = rejected
            if params.constraint is not None:
                raise BackendError(f"{self.base_url}/completions rejected the {params.constraint.what} constraint "
                                   f"(vLLM's structured_outputs) with HTTP {status}: {detail[:500]}")
            if status == 422 and self._send_extras and "unexpected field" in detail.lower():
                logger.info("%s rejects vLLM's extra fields; retrying without them: %s", self.base_url, detail[:200])
                self._send_extras = False
                continue
            if self.prompt_as == "auto" and not use_text and "prompt" in detail.lower():
                logger.info("%s rejects token-id prompts; sending guarded text prompts from now on", self.base_url)
                self.prompt_as = "text"
                continue
            raise BackendError(f"{self.base_url}/completions answered HTTP {status}: {detail[:500]}")
        raise BackendError(f"{self.base_url}/completions kept rejecting the request")

    async def _request(self, body: dict[str, Any], prompt_ids_len: int) -> AsyncGenerator[tuple[str, Any], None]:
        """Yield ("delta", text) items, or one ("rejected", (status, detail)) for a 4xx answer before streaming."""
        import httpx

        finish_reason = stop_reason = None
        usage: dict[str, Any] = {}
        chunks = 0
        from_ids: _IdDeltas | None = None  # made at the first chunk that carries token ids
        held = ""  # text-only servers: a tail that may be the stop token's string (see the module docstring)
        url = f"{self.base_url}/completions"
        failure: BaseException | None = None
        call = client_span("POST", url)  # the model server's own spans join the turn's trace
        try:
            async with self._http().stream("POST", url, json=body, headers=outgoing_headers(call)) as response:
                annotate(call, {"http.response.status_code": response.status_code})
                if response.status_code >= 400:
                    detail = (await response.aread()).decode("utf-8", "replace")
                    if response.status_code in (400, 422):
                        yield "rejected", (response.status_code, detail)
                        return
                    hint = " (check the API key / api_key_env)" if response.status_code in (401, 403) else ""
                    raise BackendError(
                        f"{self.base_url}/completions answered HTTP {response.status_code}{hint}: {detail[:500]}"
                    )
                async for line in response.aiter_lines():
                    if not line.startswith("data:"):
                        continue
                    data = line[5:].strip()
                    if data == "[DONE]":
                        break
                    chunk = _parse_chunk(data, self.base_url)
                    if chunk.get("usage"):
                        usage = chunk["usage"]
                    for choice in chunk.get("choices") or ():
                        token_ids = choice.get("token_ids")
                        if isinstance(token_ids, list):  # vLLM: decode the ids here, special ids marked
                            self._ids_seen = True
                            chunks += 1
                            from_ids = from_ids or _IdDeltas(self._tokenizer or _default_tokenizer())
                            for delta in from_ids.push(token_ids):
                                yield "delta", delta
                        elif text := choice.get("text") or "":
                            self._ids_seen = False
                            if "structured_outputs" in body:  # not vLLM: the constraint may have been ignored
                                raise BackendError(self._not_vllm())
                            chunks += 1
                            text, held = _hold_stop_tail(held + text, _stop_names(self._tokenizer))
                            if text:
                                yield "delta", text
                        finish_reason = choice.get("finish_reason") or finish_reason
                        stop_reason = choice.get("stop_reason", stop_reason)
        except httpx.TimeoutException as exc:
            failure = exc
            raise BackendError(
                f"model server at {self.base_url} timed out ({type(exc).__name__}); raise the timeout or check the "
                "server's load"
            ) from exc
        except httpx.HTTPError as exc:
            failure = exc
            raise self._down(exc) from exc
        except BaseException as exc:  # a backend error, or the turn closing the stream
            failure = exc
            raise
        finally:
            end(call, error=failure)
        for delta in from_ids.flush() if from_ids is not None else ():
            yield "delta", delta
        if finish_reason == "stop" and not (from_ids is not None and from_ids.stopped):
            tokenizer = self._tokenizer or _default_tokenizer()
            stops = _stop_names(tokenizer)
            stop_by_id = {tokenizer.special_tokens[name]: name for name in stops}
            tail = stop_by_id.get(stop_reason) if isinstance(stop_reason, int) else None
            if held in stops:  # the text ended with the stop token the server stopped at
                tail, held = tail or held, ""
            if held:
                yield "delta", held
            yield "delta", SpecialToken(tail or stops[-1])  # the family's end of turn
        elif held:
            yield "delta", held
        self.stats.record(**_token_counts(body["prompt"], prompt_ids_len, usage, chunks))
        self.stats.last_usage_from_server = bool(usage)


def _token_counts(prompt: list[int] | str, prompt_ids_len: int, usage: dict[str, Any], chunks: int) -> dict[str, int]:
    """Prompt, cached and generated tokens of one call: the server's usage where it sent one, else counted here.

    A text prompt has exactly the ids we rendered it from (the server adds back the <|begin_of_text|> we drop), so a
    server that sends no usage (one not asked, or one that ignores `stream_options`) never reads as 0 prompt tokens.
    """
    details = usage.get("prompt_tokens_details") or {}
    return {
        "prompt": len(prompt) if isinstance(prompt, list) else int(usage.get("prompt_tokens") or prompt_ids_len),
        "cached": int(details.get("cached_tokens") or 0),
        "generated": int(usage.get("completion_tokens") or chunks),
    }


def _parse_chunk(data: str, base_url: str) -> dict[str, Any]:
    try:
        chunk = json.loads(data)
    except json.JSONDecodeError as exc:
        raise BackendError(f"model server at {base_url} sent an unparseable stream chunk: {data[:200]!r}") from exc
    if not isinstance(chunk, dict):
        raise BackendError(f"model server at {base_url} sent an unexpected stream chunk: {data[:200]!r}")
    if "error" in chunk:
        raise BackendError(f"model server at {base_url} reported an error: {chunk['error']}")
    return chunk


def _hold_stop_tail(text: str, stops: tuple[str, ...] = STOP_STRINGS) -> tuple[str, str]:
    """Split off a tail that is a stop-token string or its beginning (held until the next text or the end)."""
    start = text.rfind("<|")
    if start >= 0 and any(stop.startswith(text[start:]) for stop in stops):
        return text[:start], text[start:]
    return text, ""


class _IdDeltas:
    """Deltas from generated ids: plain ids decoded with a small window of pending bytes (an incomplete UTF-8
    character waits for its rest), special ids as `SpecialToken`."""

    def __init__(self, tokenizer: Any) -> None:
        import codecs

        self._tokenizer = tokenizer
        self._names = {token_id: name for name, token_id in tokenizer.special_tokens.items()}
        self._stops = _stop_names(tokenizer)
        self._utf8 = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self.stopped = False  # a stop id was among them

    def push(self, token_ids: list[Any]) -> list[str]:
        out: list[str] = []
        text = ""
        for token_id in token_ids:
            if not isinstance(token_id, int) or token_id < 0:
                raise BackendError(f"model server sent an invalid token id {token_id!r}")
            name = self._names.get(token_id)
            if name is None:
                text += self._utf8.decode(self._tokenizer.decode_bytes([token_id]))
                continue
            text += self._utf8.decode(b"", final=True)
            if text:
                out.append(text)
                text = ""
            out.append(SpecialToken(name))
            self.stopped = self.stopped or name in self._stops
        if text:
            out.append(text)
        return out

    def flush(self) -> list[str]:
        text = self._utf8.decode(b"", final=True)
        return [text] if text else []


"""A small real HTTP server answering `/v1/completions` like vLLM does, with a real causal LM behind it (the tiny
trained Llama Guard), for `make test`: `transformers serve` takes no token-id prompts and vLLM is too heavy for the
default suite (tests/vllm compares against the real vLLM).

What it implements of vLLM's API: token-id or text prompts (text tokenized as a server would: special-token text
becomes control tokens, and a BOS is prepended), greedy decoding up to `max_tokens` or a stop token
(`stop_token_ids` plus the model's own), `logprobs: N` (the top N of the full-vocabulary log-softmax per generated
token; keys `token_id:N` with `return_tokens_as_token_ids`, else the token's text), `/v1/models`. `mode` switches on
one fault at a time for the fail-closed tests; `craft` rewrites an answer (status and payload, or the raw bytes sent),
`models_delay_s` / `completions_delay_s` slow one endpoint down, `drip_s` sends each body in small pieces that far
apart, and `no_length` sends it without Content-Length (the body ends when the connection closes).
"""

from __future__ import annotations

import contextlib
import json
import re
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

MODES = (
    "ok",
    "slow",
    "garbage",
    "http500",
    "no_unsafe",
    "unsafe_beyond_top",
    "wrong_top",
    "no_logprobs",
    "ids_refused",
    "strict_fields",
)
_SPECIAL = re.compile(r"(<\|[a-z0-9_]+\|>)")
_KNOWN_FIELDS = {
    "model",
    "prompt",
    "max_tokens",
    "temperature",
    "logprobs",
    "stream",
    "top_p",
    "seed",
    "prompt_logprobs",
}


class CompletionsModel:
    """The model side: greedy decoding with per-step top log-probabilities."""

    def __init__(self, model_dir: Path, family: str = "llama3") -> None:
        import torch
        from transformers import AutoModelForCausalLM

        from model.tokenizer import get_tokenizer

        self.model = AutoModelForCausalLM.from_pretrained(str(model_dir), dtype=torch.float32).eval()
        self.tokenizer = get_tokenizer(model_dir, family=family)
        self.eos = set(self.tokenizer.stop_ids)  # the family's end of text, end of message, end of turn
        self.lock = threading.Lock()
        self.complete([self.tokenizer.bos_id, 9906], 1, 20, set())  # warm up: the first forward pass is the slow one

    def encode_text(self, text: str) -> list[int]:
        """A server's reading of a text prompt: special-token strings ARE control tokens, BOS added."""
        tok = self.tokenizer
        ids = [tok.special_id("<|begin_of_text|>")]
        for part in _SPECIAL.split(text):
            if part in tok.special_tokens:
                ids.append(tok.special_tokens[part])
            elif part:
                ids.extend(tok.encode(part))
        return ids

    def prompt_logprobs(self, ids: list[int]) -> list[dict[str, dict[str, Any]] | None]:
        """vLLM's `prompt_logprobs: 0`: each prompt token's log-probability given the tokens before it."""
        import torch

        with self.lock, torch.inference_mode():
            logits = self.model(input_ids=torch.tensor([ids])).logits[0].float()
            logprobs = torch.log_softmax(logits, dim=-1)
        entries: list[dict[str, dict[str, Any]] | None] = [None]
        for position, token in enumerate(ids[1:]):
            value = float(logprobs[position, token])
            rank = int((logprobs[position] > value).sum()) + 1
            entries.append(
                {str(token): {"logprob": value, "rank": rank, "decoded_token": self.tokenizer.decode([token])}}
            )
        return entries

    def complete(
        self, ids: list[int], max_tokens: int, top_n: int | None, stop_ids: set[int]
    ) -> tuple[list[int], list[dict[int, float]], str]:
        import torch

        generated: list[int] = []
        tops: list[dict[int, float]] = []
        finish = "length"
        with self.lock, torch.inference_mode():
            current = list(ids)
            for _ in range(max_tokens):
                logits = self.model(input_ids=torch.tensor([current]), logits_to_keep=1).logits[0, -1].float()
                logprobs = torch.log_softmax(logits, dim=-1)
                next_id = int(torch.argmax(logprobs))
                if top_n:
                    values, indices = torch.topk(logprobs, top_n)
                    tops.append({int(i): float(v) for v, i in zip(values, indices, strict=True)})
                if next_id in stop_ids or next_id in self.eos:
                    finish = "stop"
                    break
                generated.append(next_id)
                current.append(next_id)
        return generated, tops, finish


class CompletionsServer:
    def __init__(self, model: CompletionsModel, name: str = "tiny-guard") -> None:
        self.model = model
        self.name = name
        self.mode = "ok"
        self.delay_s = 3.0
        self.requests: list[dict[str, Any]] = []
        self.authorizations: list[str | None] = []  # each request's Authorization header
        # (path, request body or None for GET, status, payload) -> (status, payload or the exact bytes to send)
        self.craft: Callable[[str, dict[str, Any] | None, int, Any], tuple[int, Any]] | None = None
        self.models_delay_s = 0.0
        self.completions_delay_s = 0.0
        self.drip_s = 0.0
        self.no_length = False
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"
        self._thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def answer(self, body: dict[str, Any]) -> tuple[int, Any]:
        self.requests.append(body)
        mode = self.mode
        if mode == "slow":
            time.sleep(self.delay_s)
        if mode == "http500":
            return 500, {"error": "internal error"}
        if mode == "strict_fields" and set(body) - _KNOWN_FIELDS:
            return 422, {"detail": f"unexpected field(s): {sorted(set(body) - _KNOWN_FIELDS)}"}
        if body.get("model") != self.name:
            return 404, {"error": f"The model `{body.get('model')}` does not exist."}
        prompt = body.get("prompt")
        if isinstance(prompt, list):
            if mode == "ids_refused":
                return 400, {"error": "prompt must be a string"}
            ids = [int(i) for i in prompt]
        elif isinstance(prompt, str):
            ids = self.model.encode_text(prompt)
        else:
            return 400, {"error": "prompt must be a string or a list of token ids"}
        top_n = body.get("logprobs")
        stop = set(body.get("stop_token_ids") or ())
        generated, tops, finish = self.model.complete(ids, int(body.get("max_tokens", 16)), top_n, stop)
        tok = self.model.tokenizer
        choice: dict[str, Any] = {"index": 0, "text": tok.decode(generated), "finish_reason": finish}
        if body.get("prompt_logprobs") is not None and mode != "no_unsafe":
            choice["prompt_logprobs"] = self.model.prompt_logprobs(ids)
        if top_n:
            as_ids = bool(body.get("return_tokens_as_token_ids"))
            top = [{(f"token_id:{i}" if as_ids else tok.decode([i])): lp for i, lp in t.items()} for t in tops]
            if mode in ("no_unsafe", "unsafe_beyond_top"):
                unsafe = "token_id:" + str(tok.encode("unsafe")[0]) if as_ids else "unsafe"
                top = [{k: v for k, v in t.items() if k != unsafe} for t in top]
            if mode == "wrong_top":
                top = [{**t, ("token_id:13" if as_ids else "."): 0.0} for t in top]
            choice["logprobs"] = None if mode == "no_logprobs" else {"top_logprobs": top, "tokens": []}
        usage = {"prompt_tokens": len(ids), "completion_tokens": len(generated)}
        return 200, {"id": "cmpl-test", "object": "text_completion", "choices": [choice], "usage": usage}

    def start(self) -> CompletionsServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def _handler(server: CompletionsServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:
            pass

        def _send(self, status: int, payload: Any, request: dict[str, Any] | None = None) -> None:
            if server.craft is not None:
                status, payload = server.craft(self.path, request, status, payload)
            data = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            if not server.no_length:
                self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            if not server.drip_s:
                self.wfile.write(data)
                return
            for start in range(0, len(data), 64):
                self.wfile.write(data[start : start + 64])
                self.wfile.flush()
                time.sleep(server.drip_s)

        def do_GET(self) -> None:
            time.sleep(server.models_delay_s)
            with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                if self.path == "/v1/models":
                    self._send(200, {"object": "list", "data": [{"id": server.name, "object": "model"}]})
                else:
                    self._send(404, {"error": "not found"})

        def do_POST(self) -> None:
            server.authorizations.append(self.headers.get("Authorization"))
            length = int(self.headers.get("Content-Length") or 0)
            body = json.loads(self.rfile.read(length) or b"{}")
            if self.path != "/v1/completions":
                self._send(404, {"error": "not found"})
                return
            if server.mode == "garbage":
                self._send(200, b"<html>Bad gateway</html>")
                return
            status, payload = server.answer(body)
            time.sleep(server.completions_delay_s)
            with contextlib.suppress(BrokenPipeError, ConnectionResetError):  # the client gave up (timeouts)
                self._send(status, payload, body)

    return Handler


@contextmanager
def running(model: CompletionsModel, name: str = "tiny-guard") -> Iterator[CompletionsServer]:
    server = CompletionsServer(model, name).start()
    try:
        yield server
    finally:
        server.stop()

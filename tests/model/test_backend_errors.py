"""A missing model gives one ModelNotFoundError saying what was looked for, why it failed and how to fix it."""

from __future__ import annotations

import http.server
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from model.backends import ModelNotFoundError, load_backend
from model.backends.loading import resolve_model_source

HUB_ID = "meta-llama/Llama-3.1-8B-Instruct"


def fake_hub(error_code: str, status: int) -> Iterator[str]:
    """A local endpoint answering like the Hub does for a gated or unknown repository (headers the client reads)."""

    class Handler(http.server.BaseHTTPRequestHandler):
        def answer(self) -> None:
            self.send_response(status)
            self.send_header("X-Error-Code", error_code)
            self.send_header("X-Error-Message", "refused by the fake hub")
            self.send_header("Content-Length", "0")
            self.end_headers()

        do_GET = do_HEAD = answer

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def hub_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    import huggingface_hub.constants as hub_constants  # reads HF_HUB_OFFLINE once, at import

    monkeypatch.setattr(hub_constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub-cache"))
    monkeypatch.delenv("HF_TOKEN", raising=False)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("TRANSFORMERS_OFFLINE", raising=False)


def test_missing_directory(tmp_path: Path) -> None:
    missing = tmp_path / "models" / "llama"
    with pytest.raises(ModelNotFoundError) as info:
        resolve_model_source(str(missing))
    message = str(info.value)
    assert str(missing) in message and "does not exist" in message and "assistant dev tiny-models" in message


def test_directory_without_weights_lists_what_is_missing(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text("{}")
    (tmp_path / "original").mkdir()
    (tmp_path / "original" / "consolidated.00.pth").write_bytes(b"")
    with pytest.raises(ModelNotFoundError) as info:
        resolve_model_source(str(tmp_path))
    assert "model weights" in info.value.why and "tokenizer" in info.value.why
    assert "config.json" not in info.value.why
    assert "Meta's original checkpoint format" in info.value.why
    assert "hf download" in info.value.fix


def test_offline_and_not_cached(hub_env: None, monkeypatch: pytest.MonkeyPatch) -> None:
    import huggingface_hub.constants as hub_constants

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(hub_constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(ModelNotFoundError) as info:
        resolve_model_source(HUB_ID)
    assert info.value.looked_for == f"Hugging Face hub model {HUB_ID}"
    assert "HF_HUB_OFFLINE=1" in info.value.why and "local Hugging Face cache" in info.value.why
    assert f"hf download {HUB_ID}" in info.value.fix


def test_no_network(hub_env: None) -> None:
    import socket

    with socket.socket() as sock:  # a port nobody listens on: connection refused, like a machine without network
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with pytest.raises(ModelNotFoundError) as info:
        resolve_model_source(HUB_ID, endpoint=f"http://127.0.0.1:{port}")
    assert "could not be reached (no network?)" in info.value.why
    assert "proxy" in info.value.fix


def test_gated_repository_without_token(hub_env: None) -> None:
    for endpoint in fake_hub("GatedRepo", 401):
        with pytest.raises(ModelNotFoundError) as info:
            resolve_model_source(HUB_ID, endpoint=endpoint)
        assert "gated" in info.value.why and "HF_TOKEN is not set" in info.value.why
        assert f"https://huggingface.co/{HUB_ID}" in info.value.fix and "HF_TOKEN" in info.value.fix
        with pytest.raises(ModelNotFoundError) as info:
            resolve_model_source(HUB_ID, endpoint=endpoint, token="hf_fake")
        assert "has no access" in info.value.why


def test_unknown_repository(hub_env: None) -> None:
    for endpoint in fake_hub("RepoNotFound", 404):
        with pytest.raises(ModelNotFoundError) as info:
            resolve_model_source("meta-llama/No-Such-Model", endpoint=endpoint)
        assert "no such repository" in info.value.why


async def test_backend_raises_it_on_first_use(tmp_path: Path) -> None:
    from model.backends import GenerationParams

    backend = load_backend(f"transformers:{tmp_path / 'nowhere'}")  # creating the backend loads nothing
    with pytest.raises(ModelNotFoundError, match="does not exist"):
        async for _ in backend.stream([128000], GenerationParams()):
            pass


def test_unknown_tiny_name() -> None:
    with pytest.raises(ModelNotFoundError, match="unknown tiny model"):
        resolve_model_source("tiny:no-such-model")

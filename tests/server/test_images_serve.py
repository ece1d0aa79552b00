"""`image_url` content parts in `serve`: refused with a 400 where the policy cannot judge images (the guarded server:
Llama Guard 3), judged with their message where it can (a server on the Llama 4 family: the tiny Llama 4 with its
vision tower, the tiny Llama Guard 4 that sees images, solid magenta being its unsafe test colour)."""

from __future__ import annotations

import base64
import io
import os
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from PIL import Image

from tests.server.conftest import KEY_A, ServerProcess

LLAMA4_POLICY = """\
version: 1
models:
  main: {{source: tiny:llama4-vision, family: llama4, device: cpu, dtype: float32, max_new_tokens: 8,
          context_window: 8192}}
  llama_guard: {{source: tiny:llama-guard-4, variant: "4", device: cpu, dtype: float32}}
llama_guard: {{timeout_s: 120}}
stages:
  user_input: {{llama_guard: {{enabled: true}}, prompt_guard: {{enabled: false}}}}
  model_output: {{llama_guard: {{enabled: false}}, code_shield: {{enabled: false}}}}
  tool_result: {{prompt_guard: {{enabled: false}}}}
audit: {{path: {audit}, texts: hash}}
images: {{max_bytes: 3000000}}
server: {{max_body_bytes: 20000}}
"""


class PolicyModelServer(ServerProcess):
    """The server on its policy's own main model (no scripted --model)."""

    def command(self) -> list[str]:
        cmd = super().command()
        at = cmd.index("--model")
        return cmd[:at] + cmd[at + 2:]


@pytest.fixture(scope="module")
def llama4_server(
    tmp_path_factory: pytest.TempPathFactory, tiny_guard_dirs: dict[str, Path]
) -> Iterator[ServerProcess]:
    directory = tmp_path_factory.mktemp("llama4-server")
    policy = LLAMA4_POLICY.format(audit=directory / "audit.jsonl")
    server = PolicyModelServer(directory, policy=policy).start()
    yield server
    server.stop()


def data_url(colour: tuple[int, int, int] | None, size: tuple[int, int] = (96, 64), fmt: str = "PNG") -> str:
    out = io.BytesIO()
    if colour is None:  # a photo-like image: noise does not compress
        Image.frombytes("RGB", size, os.urandom(size[0] * size[1] * 3)).save(out, fmt, quality=95)
    else:
        Image.new("RGB", size, colour).save(out, fmt)
    return f"data:image/{fmt.lower()};base64," + base64.b64encode(out.getvalue()).decode()


def ask(server: ServerProcess, content: object, role: str = "user") -> httpx.Response:
    body = {"model": "x", "messages": [{"role": role, "content": content}]}
    if role != "user":
        body["messages"].append({"role": "user", "content": "and?"})
    return httpx.post(server.base + "/v1/chat/completions", json=body, headers=server.headers(KEY_A), timeout=240)


def parts(text: str, *urls: str) -> list[dict]:
    return [{"type": "text", "text": text}, *({"type": "image_url", "image_url": {"url": u}} for u in urls)]


def test_images_are_refused_where_the_guards_cannot_see_them(guarded_server: ServerProcess) -> None:
    response = ask(guarded_server, parts("What is this?", data_url((90, 160, 220))))
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error["code"] == "images_refused" and "guards cannot see images" in error["message"]


@pytest.mark.parametrize(("content", "role", "param", "problem"), [
    (parts("x", "https://example.com/cat.png"), "user", "messages[0].content[1].image_url.url", "only data: URLs"),
    (parts("x", "data:image/png;base64,AAAA"), "user", "messages[0].content[1].image_url.url", "not an image"),
    ([{"type": "image_url", "image_url": "not an object"}], "user", "messages[0].content[0].image_url.url", "needs"),
    ([{"type": "input_audio", "input_audio": {}}], "user", "messages[0].content[0]", "text or image_url"),
])
def test_malformed_image_parts_are_400s_naming_the_part(guarded_server: ServerProcess, content: object, role: str,
                                                       param: str, problem: str) -> None:
    response = ask(guarded_server, content, role)
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error["param"] == param and problem in error["message"]


def test_an_image_outside_a_user_message_is_refused(guarded_server: ServerProcess) -> None:
    response = ask(guarded_server, parts("x", data_url((1, 2, 3))), role="system")
    assert response.status_code == 400 and "user messages only" in response.json()["error"]["message"]


def test_an_unsafe_image_is_a_content_filter_refusal(llama4_server: ServerProcess) -> None:
    response = ask(llama4_server, parts("A harmless question about this.", data_url((255, 0, 255))))
    assert response.status_code == 200, response.text
    body = response.json()
    choice = body["choices"][0]
    assert choice["finish_reason"] == "content_filter" and choice["message"]["content"] is None
    assert body["usage"]["completion_tokens"] == 0  # the model never ran


def test_a_benign_photo_is_answered_and_the_body_limit_admits_it(llama4_server: ServerProcess) -> None:
    photo = data_url(None, (640, 480), "JPEG")  # ~480 kB of base64: far past server.max_body_bytes (20,000)
    assert len(photo) > 400_000
    response = ask(llama4_server, parts("What is in this photo?", photo))
    assert response.status_code == 200, response.text
    assert response.json()["choices"][0]["finish_reason"] in ("stop", "length")
    assert response.json()["usage"]["prompt_tokens"] > 2 * 144  # a 640x480 photo is 2 tiles + the global one


def test_the_native_thread_endpoint_takes_image_parts(llama4_server: ServerProcess) -> None:
    headers = llama4_server.headers(KEY_A)
    thread = httpx.post(llama4_server.base + "/v1/threads", headers=headers, timeout=30).json()["id"]
    with httpx.stream("POST", f"{llama4_server.base}/v1/threads/{thread}/messages", headers=headers, timeout=240,
                      json={"content": parts("Look.", data_url((255, 0, 255)))}) as response:
        text = "".join(response.iter_text())
    assert response.status_code == 200 and '"refusal"' in text and "magenta" not in text

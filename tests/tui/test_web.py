"""`assistant chat --web` in a real headless Chromium (Debian's `chromium`, driven by Playwright): the page loads the
chat, a message typed into the page gets its guarded answer, and a screenshot is kept as an artefact
(`.cache/test-artefacts/web-chat.png`, and in the test's tmp dir). The server runs as the user runs it, a subprocess
of the real CLI with a scripted main model and the tiny guards; the key rule is checked over plain HTTP.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import sqlite3
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from test_agent_chat import POLICY, TINY_DIR

REPO = Path(__file__).resolve().parents[2]
ARTEFACTS = REPO / ".cache" / "test-artefacts"
ANSI = re.compile(r"\x1b\[[0-9;?]*[ -/]*[@-~]|\x1b[()][A-Za-z0-9]|\x1b[=>]")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for_http(url: str, proc: subprocess.Popen[bytes], timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"the server exited with {proc.returncode}: {proc.stdout.read().decode()[-2000:]}")  # type: ignore[union-attr]
        try:
            urllib.request.urlopen(url, timeout=1).close()
            return
        except urllib.error.HTTPError:
            return  # it answers (401 with keys)
        except OSError:
            time.sleep(0.2)
    raise AssertionError(f"{url} did not answer within {timeout} s")


@pytest.fixture
def web_chat(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    policy = tmp_path / "policy.yaml"
    policy.write_text(POLICY, encoding="utf-8")
    script = tmp_path / "model.jsonl"
    script.write_text(json.dumps({"completion": "Hello from the browser's assistant.<|eot_id|>"}) + "\n", "utf-8")
    home = tmp_path / "home"
    port = free_port()
    env = {**os.environ, "ASSISTANT_HOME": str(home), "ASSISTANT_TINY_MODELS": str(TINY_DIR)}
    env.pop("ASSISTANT_API_KEYS", None)
    proc = subprocess.Popen(
        [sys.executable, "-m", "assistant.cli", "chat", "--web", "--port", str(port), "--policy", str(policy),
         "--model", f"scripted:{script}"],
        cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
    )
    try:
        url = f"http://127.0.0.1:{port}/"
        wait_for_http(url, proc)
        yield url, home
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()


def test_chat_in_a_real_browser(web_chat: tuple[str, Path], tmp_path: Path) -> None:
    from playwright.sync_api import sync_playwright

    url, home = web_chat
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    assert chromium, "Debian's chromium is missing: apt-get install chromium (make setup installs it as root)"
    screen: list[str] = []  # what the app wrote to the page's terminal, escape codes removed

    def on_frame(payload: str | bytes) -> None:
        text = payload.decode("utf-8", "replace") if isinstance(payload, bytes) else payload
        screen.append(ANSI.sub("", text))

    def wait_for(text: str, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if text in "".join(screen):
                return
            page.wait_for_timeout(200)
        page.screenshot(path=str(tmp_path / "web-chat-failed.png"))
        (tmp_path / "web-chat-screen.txt").write_text("".join(screen), encoding="utf-8")
        raise AssertionError(f"{text!r} never appeared on the page (see {tmp_path}/web-chat-*)")

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium, headless=True, args=["--no-sandbox"])
        try:
            page = browser.new_page(viewport={"width": 1200, "height": 800})
            page.on("websocket", lambda ws: ws.on("framereceived", on_frame))
            page.goto(url)
            wait_for("Guarded assistant", 30)  # the app drew its first screen
            wait_for("Message the assistant", 120)  # the guards loaded: the input accepts text
            page.locator(".xterm-helper-textarea").focus()
            page.keyboard.type("hello from the browser")
            page.keyboard.press("Enter")
            wait_for("Hello from the browser's assistant.", 60)
            page.wait_for_timeout(500)
            shot = tmp_path / "web-chat.png"
            page.screenshot(path=str(shot))
        finally:
            browser.close()
    assert shot.stat().st_size > 10_000
    ARTEFACTS.mkdir(parents=True, exist_ok=True)
    shutil.copy(shot, ARTEFACTS / "web-chat.png")
    # the turn went through the guards: the chat's store has it with its verdicts
    with sqlite3.connect(home / "data" / "chat.sqlite") as db:
        [(user_text, events)] = db.execute("SELECT user_text, events FROM turns").fetchall()
    kinds = [(e["type"], e.get("stage"), e.get("decision")) for e in json.loads(events)]
    assert user_text == "hello from the browser"
    assert ("verdict", "user_input", "allow") in kinds and ("verdict", "model_output", "allow") in kinds
    assert kinds[-1][0] == "final"


def test_web_key_rule(tmp_path: Path) -> None:
    assistant = [sys.executable, "-m", "assistant.cli", "chat", "--web", "--host", "0.0.0.0", "--port"]
    env = {k: v for k, v in os.environ.items() if k != "ASSISTANT_API_KEYS"} | {"ASSISTANT_HOME": str(tmp_path)}
    refused = subprocess.run([*assistant, str(free_port())], env=env, capture_output=True, text=True, timeout=60)
    assert refused.returncode == 2 and "refusing to listen on 0.0.0.0 without API keys" in refused.stderr
    key = "k" * 24
    port = free_port()
    proc = subprocess.Popen([*assistant, str(port)], env={**env, "ASSISTANT_API_KEYS": key},
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        base = f"http://127.0.0.1:{port}"
        wait_for_http(base + "/", proc)
        for path in ("/", "/static/js/textual.js", "/?key=" + "x" * 24):
            with pytest.raises(urllib.error.HTTPError) as denied:
                urllib.request.urlopen(base + path, timeout=5)
            assert denied.value.code == 401
        opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor())
        with opener.open(f"{base}/?key={key}", timeout=5) as page:  # redirected to / with the session cookie
            assert page.status == 200 and page.url == base + "/" and b"textual-terminal" in page.read()
        with opener.open(base + "/static/js/textual.js", timeout=5) as script:
            assert script.status == 200
    finally:
        proc.terminate()
        proc.wait(timeout=10)

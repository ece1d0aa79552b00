"""A real `assistant serve` process per scenario (uvicorn on a free loopback port), the tiny trained guards, and a
`scripted-keyed` main model that answers by the last message, so concurrent requests each get their own answer."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

REPO = Path(__file__).resolve().parents[2]
TINY_DIR = REPO / ".cache" / "tiny-models"
KEY_A = "key-a-0123456789abcdef"
KEY_B = "key-b-0123456789abcdef"
REFUSAL_INPUT = "I can't help with that request."

POLICY = """\
version: 1
models:
  llama_guard: {{source: tiny:llama-guard, variant: 8b, device: cpu, dtype: float32}}
  prompt_guard: {{source: tiny:prompt-guard, device: cpu}}
llama_guard: {{timeout_s: 60}}
prompt_guard: {{timeout_s: 60}}
stages:
  user_input: {{llama_guard: {{enabled: {guards}}}, prompt_guard: {{enabled: {guards}, score: jailbreak}}}}
  model_output: {{llama_guard: {{enabled: {guards}}}, code_shield: {{enabled: false}}}}
  tool_call: {{llama_guard: {{enabled: {guards}}}}}
  tool_result: {{prompt_guard: {{enabled: {guards}, score: injection}}}}
  code: {{code_shield: {{enabled: false}}}}
audit: {{path: {audit}, texts: hash}}
tools:
  approval_required: [notify, record_note]
  custom: ["tests.server.server_tools:notify", "tests.server.approval_tools:record_note"]
server: {{max_body_bytes: 20000, max_messages: 50, max_concurrent_turns: {slots}, turn_timeout_s: 60}}
"""

# No guards where answers stream (a client can leave in the middle of one), a Prompt Guard that cannot load where
# tool results are checked (the fail-closed path), two turn slots and a queue of one (1 s), no API keys (loopback
# only).
SMALL_POLICY = """\
version: 1
models:
  prompt_guard: {{source: /nonexistent/prompt-guard-dir, device: cpu}}
stages:
  user_input: {{llama_guard: {{enabled: false}}, prompt_guard: {{enabled: false}}}}
  model_output: {{llama_guard: {{enabled: false}}, code_shield: {{enabled: false}}}}
  tool_result: {{prompt_guard: {{enabled: true, score: injection}}}}
  code: {{code_shield: {{enabled: false}}}}
audit: {{path: {audit}}}
server: {{max_concurrent_turns: 2, queue_size: 1, queue_timeout_s: 1.0}}
"""


def _note(text: str) -> str:
    return '<|python_tag|>{{"name": "record_note", "parameters": {{"text": "' + text + '"}}}}<|eom_id|>'


APPROVAL_SCRIPT = [  # record_note (tests/server/approval_tools.py): one note, or two in a row, then the answer
    (r"^write a note (\w+)$", _note("{1}")),
    (r"^write two notes (\w+)$", _note("{1}-a")),
    (r"^noted (\w+)-a$", _note("{1}-b")),
    (r"^noted (\w+)-b$", "Both notes written.<|eot_id|>"),
    (r"^noted (\w+)$", "Note written.<|eot_id|>"),
    ("denied the call to record_note", "OK, I did not write it.<|eot_id|>"),
]

STRUCTURED_SCRIPT = [  # JSON answers, forced calls and a continuation (the scripted model's text must fit them)
    ("^structured refused$", '{{"text": "zyxtrigger"}}<|eot_id|>'),
    (r"^structured (\w+)$", '{{"text": "{1}"}}<|eot_id|>'),
    (r"^as a call (\w+)$", '{{"type": "function", "name": "Answer", "parameters": {{"text": "{1}"}}}}<|eot_id|>'),
    (r"^forced (\w+)$", '{{"type": "function", "name": "get_weather", "parameters": {{"city": "{1}"}}}}<|eot_id|>'),
    ("^tell a story$", " and they all lived happily.<|eot_id|>"),
]

# (regex on the last user/tool message, completion[, delay before each delta])
SCRIPT: list[tuple[str, str] | tuple[str, str, float]] = [
    ("notify me", '<|python_tag|>{{"name": "notify", "parameters": {{"message": "hi"}}}}<|eom_id|>'),
    ("^notified$", "Done, I notified you.<|eot_id|>"),
    (r"weather in (\w+)", '{{"name": "get_weather", "parameters": {{"city": "{1}"}}}}<|eom_id|>'),
    (r"temp=(\d+)", "It is {1} degrees.<|eot_id|>"),
    ("say bad", "Here is zyxtrigger text.<|eot_id|>"),
    (r"slow (\d+)", "Slow answer {1}: " + "word " * 200 + "<|eot_id|>", 0.05),
    (r"client (\d+) turn (\d+)", "Answer for client {1} turn {2}.<|eot_id|>"),
    *APPROVAL_SCRIPT,  # tests/server/test_approval_binding.py
    ("partly bad", "Safe words here. " * 40 + "Then zyxtrigger text.<|eot_id|>"),  # refused after text was streamed
    *STRUCTURED_SCRIPT,  # tests/server/test_structured_output.py
    ("^(?!.*zzbackendfail)", "Hello from the scripted model.<|eot_id|>"),  # zzbackendfail: no line, a backend error
]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _die_with_parent() -> None:
    """In the child: SIGKILL when the test process dies (a killed pytest leaves no server behind; Linux only)."""
    import contextlib
    import ctypes

    with contextlib.suppress(OSError):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


class ServerProcess:
    """`python -m assistant.cli serve` in a subprocess; `start()` waits until /readyz answers."""

    def __init__(self, directory: Path, *, policy: str | None = None, keys: tuple[str, ...] = (KEY_A, KEY_B),
                 slots: int = 32, guards: bool = True) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        self.dir = directory
        self.audit = directory / "audit.jsonl"
        self.policy = directory / "policy.yaml"
        text = policy or POLICY.format(audit=self.audit, slots=slots, guards=str(guards).lower())
        self.policy.write_text(text, encoding="utf-8")
        self.script = directory / "model.jsonl"
        lines = [{"match": m, "completion": c, **({"delay_s": rest[0]} if rest else {})} for m, c, *rest in SCRIPT]
        self.script.write_text("".join(json.dumps(line) + "\n" for line in lines), encoding="utf-8")
        self.keys_file = directory / "keys.txt"
        self.keys_file.write_text("# test keys\n" + "\n".join(keys) + "\n", encoding="utf-8")
        self.keys = keys
        self.slots = slots
        self.db = directory / "threads.sqlite"
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen[bytes] | None = None
        self.log = directory / "server.log"

    def command(self) -> list[str]:
        cmd = [sys.executable, "-m", "assistant.cli", "serve", "--policy", str(self.policy), "--port", str(self.port),
               "--model", f"scripted-keyed:{self.script}", "--db", str(self.db), "--log-level", "warning"]
        return cmd + (["--api-keys-file", str(self.keys_file)] if self.keys else [])

    def start(self, *, expect_ready: bool = True, timeout: float = 240) -> ServerProcess:
        env = {**os.environ, "ASSISTANT_HOME": str(self.dir / "home"), "ASSISTANT_TINY_MODELS": str(TINY_DIR),
               "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(REPO), "ASSISTANT_API_KEYS": ""}
        with self.log.open("ab") as log:
            self.proc = subprocess.Popen(self.command(), cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT,
                                         preexec_fn=_die_with_parent)
        try:
            return self._wait_ready(expect_ready, timeout)
        except BaseException:
            self.kill()  # never leave a server behind a failed start
            raise

    def _wait_ready(self, expect_ready: bool, timeout: float) -> ServerProcess:
        assert self.proc is not None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"server exited with {self.proc.returncode}:\n{self.log.read_text()[-3000:]}")
            try:
                r = httpx.get(self.base + "/readyz", timeout=2)
                if r.status_code == 200 or (not expect_ready and r.json().get("status") == "degraded"):
                    return self
                if expect_ready and r.json().get("status") == "degraded":
                    raise AssertionError(f"server not ready: {r.text}")
            except httpx.TransportError:
                pass
            time.sleep(0.2)
        raise AssertionError(f"server did not become ready in {timeout} s:\n{self.log.read_text()[-3000:]}")

    def headers(self, key: str | None = KEY_A) -> dict[str, str]:
        return {"Authorization": f"Bearer {key}"} if key else {}

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.kill()


@pytest.fixture(scope="session")
def guarded_server(
    tmp_path_factory: pytest.TempPathFactory, tiny_guard_dirs: dict[str, Path]
) -> Iterator[ServerProcess]:
    server = ServerProcess(tmp_path_factory.mktemp("server")).start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def small_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    directory = tmp_path_factory.mktemp("small")
    server = ServerProcess(directory, policy=SMALL_POLICY.format(audit=directory / "audit.jsonl"), keys=())
    yield server.start(expect_ready=False)  # degraded: its Prompt Guard cannot load
    server.stop()


def sse_events(response: httpx.Response) -> list[dict]:
    """The `data` objects of a native-threads SSE response."""
    events = []
    for line in response.iter_lines():
        if line.startswith("data:"):
            events.append(json.loads(line[5:].strip()))
    return events

"""Real vLLM (CPU) servers for the integration tests of `make test-vllm` (marker `vllm`; `make test` deselects them).

vLLM runs from its own virtualenv, `$VLLM_VENV` (default `~/.cache/guarded-assistant/vllm-venv`, built once by
scripts/vllm_venv.sh, `make test-vllm`), one server per checkpoint a test module needs, started and stopped by that
module (one at a time: each holds about a gigabyte or more). The figures the tests measure (start time, memory, per-
check latency) are printed at the end of the session and written to `.cache/vllm-figures.json`."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import threading
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[2]
# `make test-vllm` passes VLLM_VENV (a per-user cache shared by every checkout on the machine, 3.4 GB built once).
VLLM_PYTHON = Path(os.environ.get("VLLM_VENV", str(REPO / ".cache" / "vllm-venv"))) / "bin" / "python"
CHECKPOINTS = REPO / ".cache" / "vllm-models"
FIGURES_FILE = REPO / ".cache" / "vllm-figures.json"
START_TIMEOUT_S = float(os.environ.get("VLLM_START_TIMEOUT_S", "900"))  # a busy 2-core machine: ~1-2 min, often more
FIGURES: dict[str, Any] = {}


@dataclass
class VllmServer:
    url: str  # .../v1
    name: str  # the served model name
    process: subprocess.Popen[bytes]
    log: Path
    start_s: float

    def rss_mib(self) -> float:
        """Resident memory of the server's process group (the API server and any engine process), MiB."""
        total = 0
        for pid in _group_pids(self.process.pid):
            try:
                for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                    if line.startswith("VmRSS:"):
                        total += int(line.split()[1])
            except OSError:
                continue
        return round(total / 1024, 1)

    def kill(self) -> None:
        """SIGKILL the whole server (a crash, not a shutdown)."""
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()


class KillServerAfterFirstDelta:
    """Wraps a main-model backend: the first text it yields SIGKILLs `server` (a vLLM server dies mid-turn)."""

    def __init__(self, inner: Any, server: VllmServer) -> None:
        self.inner, self.server, self.killed = inner, server, threading.Event()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    async def stream(self, prompt_ids: list[int], params: Any) -> AsyncIterator[str]:
        async for delta in self.inner.stream(prompt_ids, params):
            if not self.killed.is_set():
                await asyncio.to_thread(self.server.kill)
                self.killed.set()
            yield delta


def _group_pids(pgid: int) -> list[int]:
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if os.getpgid(int(entry.name)) == pgid:
                    pids.append(int(entry.name))
            except OSError:
                continue
    return pids


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_vllm(model_dir: Path, name: str, log_dir: Path) -> VllmServer:
    import httpx

    if not VLLM_PYTHON.is_file():
        pytest.fail(f"vLLM's virtualenv is missing ({VLLM_PYTHON}); `make test-vllm` builds it (scripts/vllm_venv.sh)")
    port = free_port()
    log = log_dir / f"vllm-{name}.log"
    env = {**os.environ, "VLLM_ENABLE_V1_MULTIPROCESSING": "0", "VLLM_CPU_KVCACHE_SPACE": "1", "HF_HUB_OFFLINE": "1",
           "TRANSFORMERS_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false", "VLLM_NO_USAGE_STATS": "1"}
    command = [
        str(VLLM_PYTHON), "-m", "vllm.entrypoints.openai.api_server", "--model", str(model_dir),
        "--served-model-name", name, "--host", "127.0.0.1", "--port", str(port), "--max-model-len", "2048",
        "--dtype", "float32", "--enforce-eager",
        # per request, vLLM 0.32 reads only the server's setting: JSON without free whitespace, as in process
        "--structured-outputs-config", '{"backend": "xgrammar", "disable_any_whitespace": true}',
    ]
    started = time.perf_counter()
    with log.open("wb") as out:
        process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    url = f"http://127.0.0.1:{port}/v1"
    server = VllmServer(url, name, process, log, 0.0)
    while True:
        if process.poll() is not None:
            pytest.fail(f"vLLM exited with {process.returncode} while starting:\n{log.read_text()[-3000:]}")
        try:
            if httpx.get(f"{url}/models", timeout=2, trust_env=False).status_code == 200:
                break
        except httpx.HTTPError:
            pass
        if time.perf_counter() - started > START_TIMEOUT_S:
            stop_vllm(server)
            pytest.fail(f"vLLM did not start in {START_TIMEOUT_S:g}s:\n{log.read_text()[-3000:]}")
        time.sleep(0.5)
    server.start_s = round(time.perf_counter() - started, 1)
    return server


def stop_vllm(server: VllmServer) -> None:
    if server.process.poll() is not None:
        return
    os.killpg(server.process.pid, signal.SIGTERM)
    try:
        server.process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        server.kill()


@contextmanager
def vllm_server(model_dir: Path, name: str, log_dir: Path) -> Iterator[VllmServer]:
    server = start_vllm(model_dir, name, log_dir)
    FIGURES.setdefault(name, {}).update(start_s=server.start_s, rss_mib_ready=server.rss_mib())
    try:
        yield server
    finally:
        if server.process.poll() is None:
            FIGURES[name]["rss_mib_end"] = server.rss_mib()
        stop_vllm(server)


@pytest.fixture(scope="session")
def vllm_checkpoints() -> dict[str, Path]:
    from tests.vllm.checkpoints import build_vllm_checkpoints

    return build_vllm_checkpoints(CHECKPOINTS)


@pytest.hookimpl(tryfirst=True)  # before `-m` deselects
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    here = Path(__file__).parent
    for item in items:
        if here in Path(str(item.path)).parents:
            item.add_marker(pytest.mark.vllm)


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if not FIGURES:
        return
    FIGURES_FILE.parent.mkdir(parents=True, exist_ok=True)
    FIGURES_FILE.write_text(json.dumps(FIGURES, indent=2) + "\n", encoding="utf-8")
    terminalreporter.section("vLLM figures")
    for name, figures in FIGURES.items():
        terminalreporter.write_line(f"{name}: {json.dumps(figures)}")

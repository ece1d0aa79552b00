"""Arize Phoenix as a real OTLP/HTTP collector for `make test-phoenix` (marker `phoenix`; `make test` deselects it).

Phoenix runs from its own virtualenv, `$PHOENIX_VENV` (default `.cache/phoenix-venv`, built by scripts/phoenix_venv.sh):
its dependencies conflict with semgrep's pins of `mcp` and OpenTelemetry, which hold ours. One server per test module,
on free loopback ports, with its data in a temporary folder; spans are read back through its REST API.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

REPO = Path(__file__).resolve().parents[2]
PHOENIX = Path(os.environ.get("PHOENIX_VENV", str(REPO / ".cache" / "phoenix-venv"))) / "bin" / "phoenix"
START_TIMEOUT_S = float(os.environ.get("PHOENIX_START_TIMEOUT_S", "300"))  # ~45 s on a busy 2-core machine


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Phoenix:
    url: str
    process: subprocess.Popen[bytes]
    log: Path

    @property
    def traces_endpoint(self) -> str:
        return f"{self.url}/v1/traces"

    def spans(self, trace_id: str | None = None, *, wait_s: float = 30.0, least: int = 1) -> list[dict[str, Any]]:
        """The default project's spans (of one trace), waiting until at least `least` arrived."""
        deadline = time.monotonic() + wait_s
        while True:
            found: list[dict[str, Any]] = []
            cursor = None
            while True:
                params: dict[str, Any] = {"limit": 1000, **({"cursor": cursor} if cursor else {})}
                page = httpx.get(f"{self.url}/v1/projects/default/spans", params=params, timeout=10).json()
                found.extend(page["data"])
                cursor = page.get("next_cursor")
                if not cursor:
                    break
            if trace_id is not None:
                found = [s for s in found if s["context"]["trace_id"] == trace_id]
            if len(found) >= least or time.monotonic() > deadline:
                return found
            time.sleep(0.5)

    def stop(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()


def start_phoenix(directory: Path) -> Phoenix:
    assert PHOENIX.exists(), f"{PHOENIX} is missing: build Phoenix's virtualenv with scripts/phoenix_venv.sh"
    port = free_port()
    env = {**os.environ, "PHOENIX_WORKING_DIR": str(directory), "PHOENIX_PORT": str(port),
           "PHOENIX_GRPC_PORT": str(free_port()), "PHOENIX_HOST": "127.0.0.1", "PHOENIX_TELEMETRY_ENABLED": "false"}
    log = directory / "phoenix.log"
    with log.open("wb") as out:
        process = subprocess.Popen([str(PHOENIX), "serve"], env=env, stdout=out, stderr=subprocess.STDOUT,
                                   start_new_session=True)
    phoenix = Phoenix(f"http://127.0.0.1:{port}", process, log)
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"phoenix exited with {process.returncode}:\n{log.read_text()[-3000:]}")
        try:
            if httpx.get(f"{phoenix.url}/v1/projects", timeout=2).status_code == 200:
                return phoenix
        except httpx.TransportError:
            pass
        time.sleep(0.5)
    phoenix.stop()
    raise AssertionError(f"phoenix did not start in {START_TIMEOUT_S} s:\n{log.read_text()[-3000:]}")

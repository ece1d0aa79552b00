"""MCP over streamable HTTP: the FastMCP demo server on a local port, a header whose value comes from the env."""

from __future__ import annotations

import asyncio
import socket
import subprocess
import sys
import time

import pytest

from tests.tools.mcp.conftest import DEMO, tools_config
from tools.mcp import start_mcp_tools


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_listening(port: int, process: subprocess.Popen[bytes], seconds: float = 20) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            if process.poll() is not None:
                pytest.fail("the MCP HTTP server exited at start")
            time.sleep(0.1)
    process.kill()
    pytest.fail(f"the MCP HTTP server did not listen within {seconds:g} s")


@pytest.fixture
def http_server():
    port = free_port()
    process = subprocess.Popen([sys.executable, str(DEMO), "--http", str(port)], stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
    wait_listening(port, process)
    yield port, process
    process.kill()
    process.wait()


def test_http_server_tools_with_a_secret_header_from_the_environment(http_server):
    port, process = http_server
    config = tools_config({"name": "remote", "url": f"http://127.0.0.1:{port}/mcp", "timeout_s": 3,
                           "allow": ["whoami", "echo"],
                           "headers": {"Authorization": {"env": "DEMO_TOKEN", "prefix": "Bearer "}}})
    with start_mcp_tools(config, env={"DEMO_TOKEN": "tok-123"}) as started:
        assert started.notices == ()
        tools = {t.name: t for t in started.tools}
        assert set(tools) == {"whoami", "echo"}
        assert asyncio.run(tools["whoami"].run({})).output == "Bearer tok-123"
        process.kill()
        process.wait()
        out = asyncio.run(tools["echo"].run({"text": "anyone?"}))
        assert not out.ok and out.error.startswith("MCP server remote ")


def test_an_unreachable_http_server_is_a_notice():
    config = tools_config({"name": "nowhere", "url": f"http://127.0.0.1:{free_port()}/mcp", "startup_timeout_s": 5})
    with start_mcp_tools(config) as started:
        assert started.tools == ()
        [notice] = started.notices
        assert notice.server == "nowhere" and "MCP server nowhere: " in notice.message

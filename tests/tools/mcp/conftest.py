"""Real MCP servers for the tests: the FastMCP demo server, mcp-server-time (PyPI), the npm filesystem server."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path
from typing import Any

import pytest

from guards.policy import parse_policy_text

HERE = Path(__file__).resolve().parent
DEMO = HERE / "servers" / "demo_server.py"
ROOT = HERE.parents[2]
NPM_PREFIX = ROOT / ".cache" / "npm"  # `make mcp-servers` installs the npm server here, once
FS_SERVER = NPM_PREFIX / "node_modules" / "@modelcontextprotocol" / "server-filesystem" / "dist" / "index.js"


def demo(name: str = "demo", *args: str, **settings: Any) -> dict[str, Any]:
    """A tools.mcp entry running the demo server under this interpreter."""
    return {"name": name, "command": sys.executable, "args": [str(DEMO), *args], **settings}


def tools_config(*servers: dict[str, Any], **tools: Any) -> Any:
    """A validated policy's `tools` section with these MCP servers (JSON is YAML)."""
    return parse_policy_text(json.dumps({"version": 1, "tools": {"mcp": list(servers), **tools}})).tools


def fs_server_entry(root: Path, **settings: Any) -> dict[str, Any]:
    return {"name": "files", "command": node(), "args": [str(FS_SERVER), str(root)], **settings}


def node() -> str:
    found = shutil.which("node")
    if found is None:
        pytest.fail("node is not installed; the npm MCP server tests need it (apt-get install nodejs npm)")
    return found


@pytest.fixture(scope="session")
def fs_server_ready() -> None:
    """The npm filesystem server, installed by `make mcp-servers`. Missing: fail with the fix, never skip."""
    node()
    if not FS_SERVER.is_file():
        pytest.fail(f"{FS_SERVER} is missing: run `make mcp-servers` (npm install into .cache/npm, once)")

"""The tool list a person or a client reads (`assistant tools list`, `GET /v1/tools` in `serve`): every tool with its
side effects and policy status, and every MCP tool withheld from the model with why (tools.mcp.vetting)."""

from __future__ import annotations

from collections.abc import Collection, Iterable
from typing import Any

from guards.policy.tools_config import ToolsConfig
from tools.base import Tool
from tools.mcp.tool import McpTool
from tools.mcp.vetting import Withheld


def tool_rows(tools: Iterable[Tool], config: ToolsConfig, withheld: Iterable[Withheld],
              visible: Collection[str] | None = None) -> list[dict[str, Any]]:
    """JSON rows: `status` is allowed, approval required, denied (by the policy's allow/deny; `visible` the names it
    lets through, None: all of `tools`) or blocked (withheld: `reason`, and `verdict` when the guards stopped it)."""
    rows: list[dict[str, Any]] = []
    for item in tools:
        if isinstance(item, McpTool) and item.withheld:  # withheld mid-session: listed below with its reason
            continue
        status = "denied" if visible is not None and item.name not in visible else (
            "approval required" if item.name in config.approval_required else "allowed")
        rows.append({"name": item.name, "description": item.description, "builtin": item.builtin,
                     "server": item.server,  # the MCP server offering it, else None
                     "side_effects": item.side_effects, "status": status, "parameters": item.parameters})
    for held in withheld:  # never offered to the model: the definition's verdict, or its pin
        rows.append({"name": f"{held.server}.{held.tool}", "description": held.reason, "builtin": False,
                     "server": held.server, "side_effects": None, "status": "blocked",
                     "reason": held.reason, "verdict": held.verdict, "parameters": None})
    return rows

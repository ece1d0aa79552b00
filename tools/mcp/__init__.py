"""Model Context Protocol servers as tools: every call and every result goes through the agent's one tool path."""

from tools.mcp.host import McpNotice, McpStartupError, McpToolset, open_mcp_tools, start_mcp_tools

__all__ = ["McpNotice", "McpStartupError", "McpToolset", "open_mcp_tools", "start_mcp_tools"]

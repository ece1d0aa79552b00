"""A side-effect tool for the server tests' policy (`tests.server.server_tools:notify`, approval required)."""

from __future__ import annotations

from tools.custom import tool


@tool(side_effects=True)
def notify(message: str) -> str:
    """Send a notification.

    Args:
        message: the text
    """
    return "notified"

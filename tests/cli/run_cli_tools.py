"""A custom tool for the `assistant run` tests, named in their policy as `tests.cli.run_cli_tools:notify`."""

from __future__ import annotations

from tools.custom import tool

SENT: list[str] = []


@tool(side_effects=True)
def notify(message: str) -> str:
    """Send a notification.

    Args:
        message: the text
    """
    SENT.append(message)
    return "notified"

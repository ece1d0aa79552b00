"""The tools of the end-to-end tracing scenario (imported by the policy as `module:function`)."""

from __future__ import annotations

from tools.custom import tool


@tool
def fetch_page(name: str) -> str:
    """Fetch a web page (third-party text).

    Args:
        name: which page
    """
    return {"news": "Today the weather is mild and the markets are calm."}.get(name, "no such page")


@tool(side_effects=True)
def send_email(to: str, body: str) -> str:
    """Send an email.

    Args:
        to: recipient address
        body: the message
    """
    return f"sent to {to}"

"""A side-effect tool for the `assistant serve` replica tests, imported by the server processes through the policy
(`tools.custom`): each run appends one line to the file named by $SCALE_TEST_OUTBOX, so the test can count runs across
processes."""

from __future__ import annotations

import json
import os

from tools.custom import tool


@tool(side_effects=True)
def send_email(to: str, body: str) -> str:
    """Send an email.

    Args:
        to: recipient address
        body: the message
    """
    with open(os.environ["SCALE_TEST_OUTBOX"], "a", encoding="utf-8") as outbox:
        outbox.write(json.dumps({"to": to, "body": body, "pid": os.getpid()}) + "\n")
    return f"sent to {to}"

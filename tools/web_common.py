"""What the two web tools share: finding the key, one guarded GET, and errors that never leak the key."""

from __future__ import annotations

import html
import os
import re
from collections.abc import Mapping
from typing import Any

from tools.base import ToolOutput

DEFAULT_TIMEOUT_S = 10.0
_TAGS = re.compile(r"<[^>]+>")


def find_secret(value: str | None, env_name: str | None, env: Mapping[str, str] | None = None) -> str | None:
    """The key written in the policy, else the one in the named environment variable."""
    if value:
        return value
    source = os.environ if env is None else env
    return source.get(env_name) or None if env_name else None


def plain_text(snippet: str) -> str:
    """Search snippets come with HTML highlighting (`<strong>`) and entities; the model needs plain text."""
    return " ".join(html.unescape(_TAGS.sub("", snippet)).split())


async def get_json(tool: str, url: str, *, params: dict[str, str], headers: dict[str, str], secret: str,
                   timeout_s: float = DEFAULT_TIMEOUT_S) -> tuple[Any, ToolOutput | None]:
    """GET a JSON document: (document, None), or (None, an error ToolOutput) on any failure."""
    import httpx

    def redact(text: str) -> str:
        return text.replace(secret, "***") if secret else text

    try:
        async with httpx.AsyncClient(timeout=timeout_s, follow_redirects=False) as client:
            response = await client.get(url, params=params, headers=headers)
    except httpx.HTTPError as exc:
        return None, ToolOutput.failure(f"{tool}: could not reach the service: {type(exc).__name__}: "
                                        f"{redact(str(exc)) or 'no details'}")
    if response.status_code != 200:
        detail = redact(" ".join(response.text.split()))[:200]
        return None, ToolOutput.failure(f"{tool}: the service answered HTTP {response.status_code}: {detail}")
    try:
        return response.json(), None
    except ValueError:
        return None, ToolOutput.failure(f"{tool}: the service answered with something that is not JSON")

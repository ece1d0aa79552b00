"""The `brave_search` built-in tool: the Brave Search web API, results trimmed to title, url and snippet."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from guards.policy.tools_config import BraveSearchConfig
from tools.base import Tool, ToolOutput
from tools.web_common import find_secret, get_json, plain_text

DEFAULT_ENDPOINT = "https://api.search.brave.com/res/v1/web/search"


class BraveSearchArgs(BaseModel):
    model_config = ConfigDict(extra="forbid")
    query: str = Field(min_length=1, description="The search query.")


def trim_results(document: Any, max_results: int) -> list[dict[str, str]]:
    """The web results of a Brave response as [{title, url, snippet}] (pure)."""
    web = document.get("web") if isinstance(document, dict) else None
    results = web.get("results") if isinstance(web, dict) else None
    trimmed: list[dict[str, str]] = []
    for item in results if isinstance(results, list) else []:
        if not isinstance(item, dict) or not isinstance(item.get("url"), str):
            continue
        trimmed.append({"title": plain_text(str(item.get("title", ""))), "url": item["url"],
                        "snippet": plain_text(str(item.get("description", "")))})
        if len(trimmed) == max_results:
            break
    return trimmed


class BraveSearch(Tool):
    name = "brave_search"
    description = "Search the web with Brave Search."
    args_model = BraveSearchArgs
    builtin = True
    side_effects = False  # a query leaves the machine, but it does not act on anything

    def __init__(self, *, api_key: str | None = None, api_key_env: str | None = "BRAVE_API_KEY",
                 endpoint: str = DEFAULT_ENDPOINT, max_results: int = 5, env: Mapping[str, str] | None = None,
                 timeout_s: float = 10.0) -> None:
        self.api_key = find_secret(api_key, api_key_env, env)
        self.api_key_env = api_key_env
        self.endpoint = endpoint
        self.max_results = max_results
        self.timeout_s = timeout_s

    @classmethod
    def from_config(cls, config: BraveSearchConfig, env: Mapping[str, str] | None = None) -> BraveSearch:
        return cls(api_key=config.api_key, api_key_env=config.api_key_env, endpoint=config.endpoint,
                   max_results=config.max_results, env=env)

    async def call(self, arguments: dict[str, Any]) -> ToolOutput:
        if not self.api_key:
            return ToolOutput.failure(f"brave_search: no API key (set ${self.api_key_env or 'BRAVE_API_KEY'} or "
                                      f"tools.builtin.brave_search.api_key)")
        query = arguments["query"]
        document, failure = await get_json(
            self.name, self.endpoint, params={"q": query, "count": str(self.max_results)},
            headers={"Accept": "application/json", "X-Subscription-Token": self.api_key},
            secret=self.api_key, timeout_s=self.timeout_s)
        if failure is not None:
            return failure
        results = trim_results(document, self.max_results)
        return ToolOutput(ok=True, output=json.dumps({"query": query, "results": results}, ensure_ascii=False))

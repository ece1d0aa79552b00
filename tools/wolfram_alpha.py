"""The `wolfram_alpha` built-in tool: the Wolfram|Alpha Full Results API (JSON), trimmed to the pods' plain text."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from guards.policy.tools_config import WolframAlphaConfig
from tools.base import Tool, ToolOutput
from tools.web_common import find_secret, get_json

DEFAULT_ENDPOINT = "https://api.wolframalpha.com/v2/query"
MAX_PODS = 8


class WolframAlphaArgs(BaseModel):
    model_config = ConfigDict(extra="forbid")
    query: str = Field(min_length=1, description="What to compute or look up, e.g. `integrate x^2 sin x`.")


def trim_pods(document: Any) -> tuple[bool, list[dict[str, str]]]:
    """(success, [{title, text}]) from a Full Results API JSON answer (pure)."""
    result = document.get("queryresult") if isinstance(document, dict) else None
    if not isinstance(result, dict):
        return False, []
    pods: list[dict[str, str]] = []
    for pod in result.get("pods") or []:
        if not isinstance(pod, dict):
            continue
        texts = [sub.get("plaintext") for sub in pod.get("subpods") or [] if isinstance(sub, dict)]
        text = "\n".join(t.strip() for t in texts if isinstance(t, str) and t.strip())
        if text:
            pods.append({"title": str(pod.get("title", "")), "text": text})
        if len(pods) == MAX_PODS:
            break
    return bool(result.get("success")) and not result.get("error"), pods


class WolframAlpha(Tool):
    name = "wolfram_alpha"
    description = "Ask Wolfram|Alpha to compute or look up facts (math, science, units, data)."
    args_model = WolframAlphaArgs
    builtin = True
    side_effects = False

    def __init__(self, *, app_id: str | None = None, app_id_env: str | None = "WOLFRAM_ALPHA_APP_ID",
                 endpoint: str = DEFAULT_ENDPOINT, env: Mapping[str, str] | None = None,
                 timeout_s: float = 10.0) -> None:
        self.app_id = find_secret(app_id, app_id_env, env)
        self.app_id_env = app_id_env
        self.endpoint = endpoint
        self.timeout_s = timeout_s

    @classmethod
    def from_config(cls, config: WolframAlphaConfig, env: Mapping[str, str] | None = None) -> WolframAlpha:
        return cls(app_id=config.app_id, app_id_env=config.app_id_env, endpoint=config.endpoint, env=env)

    async def call(self, arguments: dict[str, Any]) -> ToolOutput:
        if not self.app_id:
            return ToolOutput.failure(f"wolfram_alpha: no app id (set ${self.app_id_env or 'WOLFRAM_ALPHA_APP_ID'} "
                                      f"or tools.builtin.wolfram_alpha.app_id)")
        query = arguments["query"]
        document, failure = await get_json(
            self.name, self.endpoint,
            params={"appid": self.app_id, "input": query, "output": "json", "format": "plaintext"},
            headers={"Accept": "application/json"}, secret=self.app_id, timeout_s=self.timeout_s)
        if failure is not None:
            return failure
        success, pods = trim_pods(document)
        if not success or not pods:
            return ToolOutput.failure(f"wolfram_alpha: no result for {query!r} (try rephrasing it as a computation)")
        return ToolOutput(ok=True, output=json.dumps({"query": query, "pods": pods}, ensure_ascii=False))

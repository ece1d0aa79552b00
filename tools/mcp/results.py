"""An MCP `CallToolResult` as a ToolOutput: text passes on; images, audio and resources are refused with a note."""

from __future__ import annotations

import json
from typing import Any

from tools.base import ToolOutput

_KIND_WORDS = {"image": "an image", "audio": "audio", "resource": "an embedded resource",
               "resource_link": "a resource link"}


def refusal_note(label: str, kinds: list[str]) -> str:
    what = ", ".join(dict.fromkeys(_KIND_WORDS.get(kind, f"{kind} content") for kind in kinds))
    return (f"[{label} also returned {what}; only text from MCP tools reaches the model here, so that part was "
            f"left out]")


def to_output(result: Any, label: str) -> ToolOutput:
    """`result`: mcp.types.CallToolResult (or anything shaped like it). `label` names the tool in notes: server.tool.

    Text content is the result, in order. Structured content counts as text only when the tool sent no text
    (servers usually send both, the text being its JSON). Any other content is named in a note, never dropped.
    """
    texts: list[str] = []
    refused: list[str] = []
    for item in getattr(result, "content", None) or ():
        kind = getattr(item, "type", "unknown")
        if kind == "text":
            texts.append(str(item.text))
        else:
            refused.append(str(kind))
    structured = getattr(result, "structuredContent", None)
    if not texts and structured is not None:
        texts.append(json.dumps(structured, ensure_ascii=False, sort_keys=True))
    if refused:
        texts.append(refusal_note(label, refused))
    output = "\n".join(texts)
    if getattr(result, "isError", False):
        return ToolOutput(ok=False, output=output, error=f"{label} reported an error: {output or '(no message)'}")
    return ToolOutput(ok=True, output=output)

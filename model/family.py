"""Which Llama family a main model speaks (`llama3`: Llama 3.1/3.2/3.3; `llama4`: Llama 4), and the tool format each
offers custom tools in by default.

The policy may name the family (`models.main.family`); otherwise a local checkpoint's `config.json` says it
(`model_type` `llama4` / `llama4_text`, or a `text_config` of that type, is Llama 4; anything else Llama 3), and
without a local checkpoint (a remote server, a scripted model) it is llama3.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import cast

from model.messages import ToolFormat
from model.tokenizer_specs import FAMILIES, Family

_LLAMA4_TYPES = frozenset({"llama4", "llama4_text"})

# Meta's default for each family: JSON for Llama 3.1 (as before), the Python list for Llama 4 (its only format).
DEFAULT_TOOL_FORMAT: dict[str, ToolFormat] = {"llama3": "json", "llama4": "pythonic"}


def family_from_config(model_dir: Path | None) -> Family | None:
    """The family a checkpoint's config.json names; None without a readable config."""
    if model_dir is None:
        return None
    try:
        config = json.loads((Path(model_dir) / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(config, dict):
        return None
    text_config = config.get("text_config")
    types = {config.get("model_type"), text_config.get("model_type") if isinstance(text_config, dict) else None}
    return "llama4" if types & _LLAMA4_TYPES else "llama3"


def resolve_family(configured: str | None, model_dir: Path | None) -> Family:
    """The policy's family when it names one, else the checkpoint's, else llama3."""
    if configured is not None:
        if configured not in FAMILIES:
            raise ValueError(f"unknown model family {configured!r} (expected one of {', '.join(FAMILIES)})")
        return cast(Family, configured)
    return family_from_config(model_dir) or "llama3"


def default_tool_format(family: str) -> ToolFormat:
    return DEFAULT_TOOL_FORMAT.get(family, "json")

"""MCP tool definitions vetted before the model sees them (docs/TOOLS.md, "The tool supply chain").

Each definition - name, title, description, input schema with its descriptions, annotations - is judged as one text
on the gate's `tool_definition` path (third-party text, like a tool's result) and compared with its pin, the sha256
that `assistant tools pin` wrote into the lock file beside the policy (`POLICY.tools.lock`). A new or changed
definition follows its server's `on_change`: `block` (withheld until re-pinned), `ask` (no human is asked yet:
withheld like `block`), `allow` (judged only). Every decision is an audit record.
"""

from __future__ import annotations

import json
import re
from collections.abc import Collection, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from guards.policy.mcp_config import McpServerConfig
from guards.runtime.gate import Judgement, judge, record
from tools.mcp.server import ListedTool
from tools.mcp.tool import McpTool

LOCK_SUFFIX = ".tools.lock"
LOCK_VERSION = 1
DEFINITION_PATH: Literal["tool_definition"] = "tool_definition"
AUDIT_KIND = "mcp_tool_definition"
Pins = Mapping[str, Mapping[str, str]]  # server -> the server's own tool name -> sha256 of its definition
PinStatus = Literal["pinned", "changed", "new"]


class LockFileError(ValueError):
    """The lock file cannot be read as pins."""


def lock_path(policy_path: str | Path) -> Path:
    """`FILE.tools.lock` beside the policy `FILE`."""
    return Path(f"{policy_path}{LOCK_SUFFIX}")


def read_pins(path: Path) -> dict[str, dict[str, str]]:
    """The pins of `path`; {} when there is no lock file (every definition is then new)."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as exc:
        raise LockFileError(f"{path}: not a tools lock file ({exc}); re-create it with `assistant tools pin`") from exc
    servers = data.get("servers") if isinstance(data, dict) else None
    if data.get("version") != LOCK_VERSION or not isinstance(servers, dict) or not all(
            isinstance(tools, dict) and all(isinstance(h, str) for h in tools.values()) for tools in servers.values()):
        raise LockFileError(f"{path}: not a version {LOCK_VERSION} tools lock file; re-create it with "
                            "`assistant tools pin`")
    return {server: dict(tools) for server, tools in servers.items()}


def pins_text(pins: Pins) -> str:
    """The lock file's text: sorted, indented JSON (readable, diffable, fit to commit beside the policy)."""
    body = {"version": LOCK_VERSION, "servers": {server: dict(tools) for server, tools in pins.items()}}
    return json.dumps(body, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def pin_status(pins: Pins, server: str, item: ListedTool) -> PinStatus:
    pinned = pins.get(server, {}).get(item.name)
    return "new" if pinned is None else "pinned" if pinned == item.sha256 else "changed"


def definition_text(tool: McpTool) -> str:
    """The whole definition as one judged text. Its first line is exactly what the model reads (the form of
    assistant.agent.provenance.definition_text); the second line holds what the server sent beyond it."""
    seen = {"name": tool.name, "description": tool.description, "parameters": tool.parameters}
    rest: dict[str, Any] = {"server": tool.server, "tool": tool.remote_name, "title": tool.title,
                            "annotations": tool.annotations}
    if tool.input_schema != tool.parameters:  # titles, $schema, descriptions beyond the cap
        rest["input_schema"] = tool.input_schema
    return (json.dumps(seen, ensure_ascii=False, sort_keys=True) + "\n"
            + json.dumps(rest, ensure_ascii=False, sort_keys=True))


def _descriptions(node: Any) -> Iterator[str]:
    if isinstance(node, list):
        for item in node:
            yield from _descriptions(item)
    elif isinstance(node, dict):
        for key, value in node.items():
            if key in ("description", "title") and isinstance(value, str):
                yield value
            else:
                yield from _descriptions(value)


def shadowed_names(item: ListedTool, others: Collection[str]) -> list[str]:
    """Other tools (another server's, a built-in, a custom or application tool) that `item`'s title or descriptions
    name as a whole word: shadowing, a definition steering how the model uses a tool it does not own. The server's
    own tools are not in `others`, so "use read_text_file instead" from the same server stays fine."""
    texts = "\n".join([item.title or "", item.description or "", *_descriptions(item.input_schema)])
    return sorted(name for name in set(others) if name != item.name
                  and re.search(rf"(?<![\w.-]){re.escape(name)}(?![\w-])", texts))


def verdict_text(judgement: Judgement) -> str:
    """What stopped a definition, in words: the stage and each guard that did not allow it."""
    if judgement.outcome == "error":
        return f"a guard failed at the {judgement.stage} stage (fail closed)"
    parts = []
    for verdict in getattr(judgement.last, "verdicts", ()):
        if verdict.decision == "allow":
            continue
        words = [verdict.guard, verdict.decision]
        if verdict.categories:
            words.append(",".join(verdict.categories))
        if verdict.score is not None:
            words.append(f"score {verdict.score:.2f}")
        parts.append(" ".join(words))
    return f"{judgement.outcome} at the {judgement.stage} stage" + (f": {'; '.join(parts)}" if parts else "")


@dataclass(frozen=True)
class Withheld:
    """A tool the model does not see, and why (`assistant tools list` shows it as blocked)."""

    server: str
    tool: str  # the server's own name
    reason: str
    verdict: str = ""  # the guards' verdict when they blocked it

    def to_json(self) -> dict[str, str]:
        return {"server": self.server, "tool": self.tool, "reason": self.reason, "verdict": self.verdict}


@dataclass(frozen=True)
class Vetting:
    """How definitions are vetted: the guards' pipeline and the pins read from the lock file."""

    pipeline: Any  # guards.runtime.pipeline.GuardPipeline
    pins: Pins
    lock_file: str = "POLICY.tools.lock"

    def change_reason(self, config: McpServerConfig, item: ListedTool) -> str | None:
        """Why a new or changed definition is withheld under the server's `on_change`, or None."""
        status = pin_status(self.pins, config.name, item)
        if status == "pinned" or config.on_change == "allow":
            return None
        what = "is new (not pinned)" if status == "new" else "changed since it was pinned"
        how = "on_change: block" if config.on_change == "block" else "on_change: ask, and no human is asked here"
        return f"its definition {what} in {self.lock_file} ({how}); review it, then run `assistant tools pin`"

    async def vet(self, config: McpServerConfig, item: ListedTool, tool: McpTool,
                  others: Collection[str] = ()) -> Withheld | None:
        """Withheld, or None once the definition's pin (or `on_change: allow`), the shadowing rule and the guards
        let it in: then `tool.judgement` holds the passed judgement (the record the agent's prompt checks).
        `others`: the names of every tool not of this server (shadowing; flagged only under `on_change: allow`)."""
        status = pin_status(self.pins, config.name, item)
        withheld: Withheld | None = None
        reason = self.change_reason(config, item)
        shadows = shadowed_names(item, others)
        if reason is None and shadows and config.on_change != "allow":
            reason = (f"shadowing: its definition names {', '.join(shadows)}, not tools of this server (on_change: "
                      f"{config.on_change}; with allow it is flagged only)")
        if reason is not None:
            withheld = Withheld(config.name, item.name, reason)
        else:
            judgement = await judge(self.pipeline, DEFINITION_PATH, definition_text(tool))
            if judgement.passed:
                tool.judgement = judgement
            else:
                verdict = verdict_text(judgement)
                withheld = Withheld(config.name, item.name, f"the guards blocked its definition ({verdict})", verdict)
        record(self.pipeline, AUDIT_KIND, text=definition_text(tool), server=config.name, tool=item.name,
               sha256=item.sha256, pin=status, on_change=config.on_change, shadowing=shadows or None,
               outcome="withheld" if withheld else "offered", reason=withheld.reason if withheld else None)
        return withheld


def vetting_for(pipeline: Any, policy_path: str | Path) -> Vetting:
    """How the MCP tool definitions of the policy at `policy_path` are vetted: judged by `pipeline`, checked against
    the pins of POLICY.tools.lock (LockFileError for a broken lock file)."""
    lock = lock_path(policy_path)
    return Vetting(pipeline, read_pins(lock), lock_file=str(lock))

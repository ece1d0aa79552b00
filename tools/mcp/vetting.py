"""MCP tool definitions vetted before the model sees them (docs/TOOLS.md, "The tool supply chain").

Each definition - name, title, description, input schema with its descriptions, annotations - is judged as one text
on the gate's `tool_definition` path (third-party text, like a tool's result) and compared with its pin, the sha256
that `assistant tools pin` wrote into the lock file beside the policy (`POLICY.tools.lock`). A new or changed
definition follows its server's `on_change`: `block` (withheld until re-pinned), `ask` (a human is shown the diff
where one is present - the chat -, else withheld like `block`), `allow` (judged only). A definition that names
another server's or a built-in tool, or steers how other tools are used, is shadowing: withheld whatever `on_change`
says. Every decision is an audit record.
"""

from __future__ import annotations

import json
import re
from collections.abc import Awaitable, Callable, Collection, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from guards.policy.mcp_config import McpServerConfig
from guards.runtime.gate import Judgement, judge, record
from tools.mcp.pins import DefinitionReview, Pins, lock_path, pin_status, read_pins, review_of
from tools.mcp.server import ListedTool
from tools.mcp.tool import McpTool

DEFINITION_PATH: Literal["tool_definition"] = "tool_definition"
AUDIT_KIND = "mcp_tool_definition"
# Asks a human whether a new or changed definition may be offered (the chat under `on_change: ask`); True = yes.
ReviewCallback = Callable[[DefinitionReview], Awaitable[bool]]


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


# Wording that tells the model how to use tools in general rather than describing this one: "instead of any other
# tool", "before calling other tools", "for all tools", "never use another tool". Names are checked separately.
STEERING = re.compile(
    r"\b(?:instead\s+of|rather\s+than|before|after|whenever|never|do\s+not|don't|always)\b[^.\n]{0,40}?"
    r"\b(?:any|all|every|other|another|the\s+other)\s+(?:\w+\s+)?(?:tools?|functions?)\b"
    r"|\b(?:for|with)\s+(?:any|all|every|other|another)\s+(?:\w+\s+)?(?:tools?|functions?)\b",
    re.IGNORECASE)


def _texts(item: ListedTool) -> str:
    return "\n".join([item.title or "", item.description or "", *_descriptions(item.input_schema)])


def shadowed_names(item: ListedTool, others: Collection[str]) -> list[str]:
    """Other tools (another server's, a built-in, a custom or application tool) that `item`'s title or descriptions
    name as a whole word: shadowing, a definition steering how the model uses a tool it does not own. The server's
    own tools are not in `others`, so "use read_text_file instead" from the same server stays fine."""
    texts = _texts(item)
    return sorted(name for name in set(others) if name != item.name
                  and re.search(rf"(?<![\w.-]){re.escape(name)}(?![\w-])", texts))


def shadowing_reason(item: ListedTool, others: Collection[str]) -> str | None:
    """Why `item`'s definition is shadowing - it names tools that are not its server's, or tells the model how to use
    tools in general - or None."""
    names = shadowed_names(item, others)
    if names:
        return f"shadowing: its definition names {', '.join(names)}, not tools of this server"
    steering = STEERING.search(_texts(item))
    if steering:
        return f"shadowing: its definition tells the model how to use other tools ({steering.group(0)!r})"
    return None


def verdict_text(judgement: Judgement) -> str:
    """What stopped a definition, in words: the stage and each guard that did not allow it."""
    if judgement.outcome == "error":
        return f"a guard failed at the {judgement.stage} stage (fail closed)"
    parts = []
    for verdict in judgement.last.verdicts if judgement.results else ():
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
    """How definitions are vetted: the guards' pipeline, the pins read from the lock file, and who is asked under
    `on_change: ask` (None where no human is present: `ask` then withholds like `block`)."""

    pipeline: Any  # guards.runtime.pipeline.GuardPipeline
    pins: Pins
    lock_file: str = "POLICY.tools.lock"
    ask: ReviewCallback | None = None

    def change_reason(self, config: McpServerConfig, item: ListedTool) -> str | None:
        """Why a new or changed definition is withheld without asking anyone, or None (pinned, allowed, or a human
        is asked after the guards passed it)."""
        status = pin_status(self.pins, config.name, item)
        if status == "pinned" or config.on_change == "allow" or (config.on_change == "ask" and self.ask is not None):
            return None
        how = "on_change: block" if config.on_change == "block" else "on_change: ask, and no human is asked here"
        return f"its definition {_what(status)} in {self.lock_file} ({how}); review it, then run `assistant tools pin`"

    async def _declined(self, config: McpServerConfig, item: ListedTool) -> str | None:
        """Ask the human about a new or changed definition (`on_change: ask`); why it is withheld, or None."""
        status = pin_status(self.pins, config.name, item)
        if status == "pinned" or config.on_change != "ask" or self.ask is None:
            return None
        try:
            approved = await self.ask(review_of(self.pins, config.name, item, self.lock_file))
        except Exception as exc:  # fail closed: a question nobody could answer is a no
            return f"its definition {_what(status)}; asking the user failed ({type(exc).__name__}: {exc})"
        if approved is True:
            return None
        return (f"its definition {_what(status)} in {self.lock_file}; the user declined it (on_change: ask; "
                "`assistant tools pin` records it once reviewed)")

    async def vet(self, config: McpServerConfig, item: ListedTool, tool: McpTool,
                  others: Collection[str] = ()) -> Withheld | None:
        """Withheld, or None once the shadowing rule, the definition's pin (`on_change`), the guards and, under
        `on_change: ask`, a human let it in: then `tool.judgement` holds the passed judgement (the record the agent's
        prompt checks). `others`: the names of every tool not of this server (shadowing withholds, whatever
        `on_change` says). The guards judge before a human is asked: nobody is shown what they block."""
        status = pin_status(self.pins, config.name, item)
        shadows = shadowed_names(item, others)
        reason = shadowing_reason(item, others) or self.change_reason(config, item)
        verdict = ""
        if reason is None:
            judgement = await judge(self.pipeline, DEFINITION_PATH, definition_text(tool))
            if not judgement.passed:
                verdict = verdict_text(judgement)
                reason = f"the guards blocked its definition ({verdict})"
            else:
                reason = await self._declined(config, item)
                if reason is None:
                    tool.judgement = judgement
        withheld = Withheld(config.name, item.name, reason, verdict) if reason is not None else None
        record(self.pipeline, AUDIT_KIND, text=definition_text(tool), server=config.name, tool=item.name,
               sha256=item.sha256, pin=status, on_change=config.on_change, shadowing=shadows or None,
               outcome="withheld" if withheld else "offered", reason=reason)
        return withheld


def _what(status: str) -> str:
    return "is new (not pinned)" if status == "new" else "changed since it was pinned"


def vetting_for(pipeline: Any, policy_path: str | Path, ask: ReviewCallback | None = None) -> Vetting:
    """How the MCP tool definitions of the policy at `policy_path` are vetted: judged by `pipeline`, checked against
    the pins of POLICY.tools.lock (LockFileError for a broken lock file), new or changed ones under `on_change: ask`
    put to `ask` (None: no human here, withheld like block)."""
    lock = lock_path(policy_path)
    return Vetting(pipeline, read_pins(lock), lock_file=str(lock), ask=ask)

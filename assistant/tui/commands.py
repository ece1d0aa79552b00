"""The chat's commands: one table behind the slash commands and the command palette (a Textual Provider)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING

from assistant.tui.session import ToolInfo

if TYPE_CHECKING:
    from textual.command import Hits


@dataclass(frozen=True)
class ChatCommand:
    name: str  # the slash command, without the slash
    action: str  # the app action it runs (also bound to a key)
    title: str  # how the palette shows it
    help: str
    argument: str = ""  # how /help writes its argument (`TITLE`, `[FILE]`); empty: takes none


COMMANDS: tuple[ChatCommand, ...] = (
    ChatCommand("new", "new_conversation", "New conversation", "Start a new conversation."),
    ChatCommand("policy", "show_policy", "Show the effective policy", "The policy in use, every default filled in."),
    ChatCommand("tools", "show_tools", "List the tools", "The tools this policy allows, and which need approval."),
    ChatCommand("clear", "clear", "Clear this conversation", "Forget this conversation's messages (the model too)."),
    ChatCommand(
        "export", "export", "Export as markdown", "Write this conversation to a markdown file.", "[FILE]"
    ),
    ChatCommand("rename", "rename_current", "Rename this conversation", "Give this conversation a title.", "TITLE"),
    ChatCommand("delete", "delete_current", "Delete this conversation", "Delete this conversation for good."),
    ChatCommand("stop", "stop", "Stop the answer", "Stop the running turn; what was shown is kept, marked stopped."),
    ChatCommand(
        "attach", "attach", "Attach a file", "Add a text file or an image to your next message (guarded).", "[PATH]"
    ),
    ChatCommand("search", "search", "Find a conversation", "Search all conversations' text; open one.", "[TEXT]"),
    ChatCommand("conversations", "toggle_conversations", "Show or hide conversations", "The conversation list."),
    ChatCommand("help", "help", "Help", "Commands and key bindings."),
    ChatCommand("quit", "quit", "Quit", "Leave the chat (conversations are saved)."),
)
BY_NAME = {command.name: command for command in COMMANDS}


@dataclass(frozen=True)
class SlashCall:
    command: ChatCommand | None  # None: unknown command
    name: str
    argument: str


def parse_slash(text: str) -> SlashCall | None:
    """`/name [argument]` -> the call; plain text (or `//text`, an escaped slash) -> None."""
    stripped = text.strip()
    if not stripped.startswith("/") or stripped.startswith("//"):
        return None
    name, _, argument = stripped[1:].partition(" ")
    return SlashCall(BY_NAME.get(name.lower()), name, argument.strip())


def unescape(text: str) -> str:
    """`//text` sends `/text` as a message."""
    stripped = text.strip()
    return stripped[1:] if stripped.startswith("//") else text


def help_markdown(keys: dict[str, str]) -> str:
    """The /help document: commands with their keys (after the user's keymap), and how to remap."""
    lines = ["## Commands", "", "| command | key | what it does |", "| --- | --- | --- |"]
    for command in COMMANDS:
        usage = f"/{command.name}" + (f" {command.argument}" if command.argument else "")
        lines.append(f"| `{usage}` | {keys.get(command.action, '')} | {command.help} |")
    lines += [
        "",
        "The command palette (ctrl+p) offers the same commands. Type `//text` to send a message starting with `/`.",
        "Enter sends; ctrl+j starts a new line (pasted text keeps its lines).",
        "",
        "## Messages",
        "",
        "Each message shows its guard verdicts: **passed**, **warned** or **blocked**. Click the badge (or focus it",
        "and press enter) for each guard's score, categories and latency. Tool calls are collapsible; Code Shield",
        "findings appear under the code they concern.",
        "",
        "## Stop, attach, find",
        "",
        "Esc (or `/stop`) stops the running answer at once: generation and tools are cancelled (a running sandbox is",
        "killed); the answer stays as far as it was shown - it passed its guards - marked **stopped**, and the model",
        "sees it that way next turn. `/attach PATH` (ctrl+o: a file picker) adds a text file to your next message;",
        "the tool-result guards judge it first (it is untrusted text) and it shows collapsed with their verdicts.",
        "Binary files and files over the policy's tools.max_result_chars are refused. An image (PNG, JPEG, WebP) goes",
        "with the message where the policy's guards see images (Llama Guard 4) and its model takes them; it shows",
        "as a thumbnail with the verdict of the guards that saw it. `/search TEXT` (ctrl+f) finds",
        "conversations by their text; enter opens one.",
        "",
        "## Conversations",
        "",
        "ctrl+b shows the list; enter switches, F2 renames, Delete deletes. Conversations are saved and resume",
        "after a restart (`assistant chat --thread ID`).",
    ]
    return "\n".join(lines)


def tools_markdown(tools: Sequence[ToolInfo]) -> str:
    """The /tools document: one row per tool the policy allows, and one per MCP tool withheld from the model."""
    if not tools:
        return "This policy allows no tools."
    lines = ["| tool | side effects | approval | description |", "| --- | --- | --- | --- |"]
    for tool in tools:
        if tool.blocked:
            lines.append(f"| `{tool.name}` | - | blocked | withheld from the model: {_cell(tool.blocked)} |")
            continue
        summary = tool.description.splitlines()[0] if tool.description else ""
        approval = "always" if tool.needs_approval else "by policy"
        lines.append(f"| `{tool.name}` | {'yes' if tool.side_effects else 'no'} | {approval} | {_cell(summary)} |")
    return "\n".join(lines)


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def palette_provider() -> type:
    """The Provider class (built lazily so importing this module does not import textual)."""
    from textual.command import DiscoveryHit, Hit, Provider

    class ChatCommands(Provider):
        async def discover(self) -> Hits:
            for command in COMMANDS:
                yield DiscoveryHit(command.title, partial(self._run, command), help=command.help)

        async def search(self, query: str) -> Hits:
            matcher = self.matcher(query)
            for command in COMMANDS:
                for text in (command.title, f"/{command.name}"):
                    score = matcher.match(text)
                    if score > 0:
                        title = matcher.highlight(command.title)
                        yield Hit(score, title, partial(self._run, command), help=command.help)
                        break

        async def _run(self, command: ChatCommand) -> None:
            await self.app.run_action(command.action)

    return ChatCommands

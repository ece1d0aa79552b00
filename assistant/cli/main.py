"""The `assistant` command: a click group whose subcommands are imported lazily.

`assistant --help` must stay fast and must not import torch or transformers, so every subcommand module is named
here as a string and imported only when that subcommand runs (or when its own help is asked for).
"""

from __future__ import annotations

import importlib

import click

# name -> (module path, attribute, one-line help shown by `assistant --help` without importing the module)
SUBCOMMANDS: dict[str, tuple[str, str, str]] = {
    "chat": ("assistant.cli.chat_cmd", "chat", "Open the terminal chat (TUI)."),
    "run": ("assistant.cli.run_cmd", "run", "Run one guarded agent turn for scripts."),
    "prompt": ("assistant.cli.prompt_cmd", "prompt", "Render Llama 3.1 prompts and parse completions."),
    "policy": ("assistant.cli.policy_cmd", "policy", "Check, show, explain and create policy files."),
    "guard": ("assistant.cli.guard_cmd", "guard", "Run the policy's guards on a text, or print a guard prompt."),
    "tools": ("assistant.cli.tools_cmd", "tools", "List tools and run one as the agent would."),
    "audit": ("assistant.cli.audit_cmd", "audit", "Verify the hash-chained audit log."),
    "db": ("assistant.cli.db_cmd", "db", "Create or upgrade the thread store (sqlite or PostgreSQL)."),
    "serve": ("assistant.cli.serve_cmd", "serve", "Serve the guarded agent over HTTP (OpenAI-compatible API)."),
    "eval": ("assistant.cli.eval_cmd", "eval_group", "Evaluate guards on labelled red-team cases."),
    "dev": ("assistant.cli.dev_cmd", "dev", "Developer helpers (tiny test models)."),
}


class LazyGroup(click.Group):
    """A group that imports a subcommand's module only when that subcommand is used."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(SUBCOMMANDS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        entry = SUBCOMMANDS.get(cmd_name)
        if entry is None:
            return None
        module_name, attribute, _ = entry
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            if exc.name != module_name:
                raise
            return None
        return getattr(module, attribute)

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        rows = [(name, help_text) for name, (_, _, help_text) in sorted(SUBCOMMANDS.items())]
        with formatter.section("Commands"):
            formatter.write_dl(rows)


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="guarded-assistant")
def cli() -> None:
    """A safety-wrapped agentic assistant for Llama 3.1.

    Every user input and model output passes Llama Guard 3 and Prompt Guard, every tool result passes Prompt Guard,
    and model-written code passes Code Shield before a tool may run it. A policy file steers all of it.
    """


def main() -> None:
    cli()

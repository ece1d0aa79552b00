"""`assistant chat`: the terminal chat. Imports textual (and, once models load, torch) only when it runs."""

from __future__ import annotations

import sqlite3
import sys
from pathlib import Path

import click

from assistant.cli import exit_codes
from assistant.cli.bind_keys import keys_for_bind
from assistant.home import data_dir
from assistant.tui.keymap import default_keymap_path, load_keymap
from assistant.tui.policy_lookup import choose_policy, offline_hint, offline_policy_path
from assistant.tui.store import ChatStore, default_store_path


@click.command()
@click.option(
    "--policy",
    "policy_file",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Policy file. Default: <config dir>/policy.yaml if it exists, else the built-in starter policy.",
)
@click.option("--model", "model_spec", metavar="SPEC", help="Main model instead of the policy's: scripted:FILE.jsonl, "
              "transformers:PATH_OR_HUB_ID, openai:BASE_URL[#model] or tiny:NAME.")
@click.option("--thread", "thread_id", metavar="ID", help="Open (resume) this conversation; a new id starts one.")
@click.option("--web", is_flag=True, help="Serve the chat to a browser (textual-serve) instead of this terminal.")
@click.option("--host", default="127.0.0.1", show_default=True, help="With --web: address to bind.")
@click.option("--port", default=8765, show_default=True, type=click.IntRange(0, 65535), help="With --web: port.")
@click.option("--api-keys-file", type=click.Path(path_type=Path), default=None,
              help="With --web: API keys, one per line (also ASSISTANT_API_KEYS); needed to bind beyond loopback.")
def chat(policy_file: Path | None, model_spec: str | None, thread_id: str | None, web: bool, host: str, port: int,
         api_keys_file: Path | None) -> None:
    """Open the terminal chat.

    Conversations are saved under the data directory and can be resumed (ctrl+b lists them). Key bindings can be
    remapped in <config dir>/keymap.toml. ASSISTANT_HOME moves both directories. --web serves the same app to a
    browser (http://HOST:PORT); like `assistant serve`, it binds beyond loopback only with API keys.
    """
    if web:
        _serve_web(policy_file, model_spec, thread_id, host, port, api_keys_file)
        return

    try:
        store = ChatStore(default_store_path())
    except (OSError, RuntimeError, sqlite3.Error) as exc:
        click.echo(f"error: cannot open the conversation store in {data_dir()}: {exc}", err=True)
        click.echo("fix: check the directory's permissions, or set ASSISTANT_HOME to a writable directory", err=True)
        sys.exit(exit_codes.BAD_INPUT)

    from assistant.tui.app import ChatApp  # lazy: the TUI imports textual (`assistant --help` stays light)
    from assistant.tui.backend import AssistantSession

    choice = choose_policy(policy_file)
    offline = offline_policy_path()
    session = AssistantSession(choice.path, model=model_spec, origin=choice.origin)
    app = ChatApp(
        session,
        store,
        thread_id=thread_id,
        offline_session=(lambda: AssistantSession(offline)) if offline is not None else None,
        offline_hint=offline_hint(offline),
        keymap=load_keymap(default_keymap_path()),
    )
    try:
        app.run()
    finally:
        store.close()


def _serve_web(policy_file: Path | None, model_spec: str | None, thread_id: str | None, host: str, port: int,
               api_keys_file: Path | None) -> None:
    keys = keys_for_bind(host, api_keys_file)
    from assistant.tui.web import chat_command, make_server  # lazy: textual and textual-serve

    args: list[str] = []
    for option, value in (("--policy", policy_file and str(policy_file.resolve())), ("--model", model_spec),
                          ("--thread", thread_id)):
        if value:
            args += [option, value]
    auth = "API keys required: open /?key=KEY" if keys.enabled else "no API keys (loopback only)"
    click.echo(f"assistant chat --web: http://{host}:{port}/ ({auth}); each page runs its own chat", err=True)
    make_server(chat_command(args), host, port, keys).serve()

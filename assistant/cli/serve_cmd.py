"""`assistant serve --policy FILE`: the guarded agent as an HTTP service (OpenAI Chat Completions + native threads).

Heavy imports (fastapi, uvicorn, the agent) happen only when the command runs. Without API keys the server binds
only to a loopback address. See docs/SERVER.md.
"""

from __future__ import annotations

import sys
from pathlib import Path

import click

from assistant.cli import exit_codes
from assistant.cli.bind_keys import keys_for_bind
from guards.policy import PolicyError, load_policy


@click.command()
@click.option("--policy", "policy_path", type=click.Path(path_type=Path), required=True, help="The policy file.")
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to bind.")
@click.option("--port", default=8000, show_default=True, type=click.IntRange(0, 65535), help="Port to bind.")
@click.option("--model", "model_spec", default=None,
              help="Main model: scripted:FILE.jsonl, scripted-keyed:FILE.jsonl, transformers:PATH, openai:URL or "
                   "tiny:NAME (default: the policy's).")
@click.option("--api-keys-file", type=click.Path(path_type=Path), default=None,
              help="API keys, one per line (also ASSISTANT_API_KEYS, comma-separated).")
@click.option("--db", "db_path", type=click.Path(path_type=Path), default=None,
              help="SQLite file for conversations (default: under the data dir).")
@click.option("--log-level", default="info", show_default=True,
              type=click.Choice(["critical", "error", "warning", "info", "debug"]))
def serve(policy_path: Path, host: str, port: int, model_spec: str | None, api_keys_file: Path | None,
          db_path: Path | None, log_level: str) -> None:
    """Serve the policy's guarded agent over HTTP until interrupted."""
    keys = keys_for_bind(host, api_keys_file)
    try:
        load_policy(policy_path)
    except PolicyError as exc:
        for issue in exc.errors:
            click.echo(str(issue), err=True)
        sys.exit(exit_codes.BAD_INPUT)

    import uvicorn

    from assistant.server.app import ServerSettings, create_app  # lazy: fastapi, langgraph

    app = create_app(ServerSettings(policy_path=policy_path, keys=keys, model=model_spec, db_path=db_path))
    auth = "API keys required" if keys.enabled else "no API keys (loopback only)"
    click.echo(f"assistant serve: http://{host}:{port}/v1 ({auth}); models load now, GET /readyz says when ready",
               err=True)
    uvicorn.run(app, host=host, port=port, log_level=log_level, timeout_graceful_shutdown=5)

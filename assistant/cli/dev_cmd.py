"""`assistant dev`: developer helpers. `tiny-models [DIR]` builds the tiny test models (assistant.dev.tiny_models)."""

from __future__ import annotations

import json
from pathlib import Path

import click

from assistant.cli import exit_codes
from assistant.dev.tiny_models import build_tiny_models, tiny_models_dir


@click.group()
def dev() -> None:
    """Developer helpers (tiny random-weight test models)."""


@dev.command("tiny-models")
@click.argument("directory", required=False, type=click.Path(file_okay=False, path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="Print {name: directory} as JSON.")
def tiny_models(directory: Path | None, as_json: bool) -> None:
    """Build the tiny main model and tiny guard models into DIRECTORY (default: the one tiny-model build cache shared
    with the tests: $ASSISTANT_TINY_MODELS, else a source checkout's .cache/tiny-models, else the user cache folder).

    Random weights (main) and tiny guards steered by trigger words (weights written down), smoke tests only: real
    architectures and the real Llama 3 tokenizer, so every loading path is the real one. Builds in seconds; models of
    the current version already there are kept.
    """
    directory = tiny_models_dir(directory)
    try:
        built = {name: str(path) for name, path in build_tiny_models(directory).items()}
    except OSError as exc:
        raise click.ClickException(f"cannot build the tiny models in {directory}: {exc}") from exc
    if as_json:
        click.echo(json.dumps(built, indent=2))
    else:
        for name, path in built.items():
            click.echo(f"{name}: {path}")
        click.echo("random weights, smoke tests only")
    raise SystemExit(exit_codes.OK)

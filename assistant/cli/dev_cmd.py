"""`assistant dev`: developer helpers. `tiny-models DIR` builds the random-weight test checkpoints."""

from __future__ import annotations

import json
from pathlib import Path

import click

from assistant.cli import exit_codes


@click.group()
def dev() -> None:
    """Developer helpers (tiny random-weight test models)."""


@dev.command("tiny-models")
@click.argument("directory", required=False, type=click.Path(file_okay=False, path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="Print {name: directory} as JSON.")
def tiny_models(directory: Path | None, as_json: bool) -> None:
    """Build the tiny main model and tiny guard models into DIRECTORY (default: the data dir's tiny-models).

    Random weights, smoke tests only: real architectures and the real Llama 3 tokenizer, so every loading path is the
    real one. Already-built models of the current version are kept.
    """
    from model.tiny import MAIN_MODEL_NAME, build_tiny_llama

    if directory is None:
        from assistant.home import tiny_models_dir

        directory = tiny_models_dir()
    built: dict[str, str] = {}
    notes: list[str] = []
    try:
        built[MAIN_MODEL_NAME] = str(build_tiny_llama(directory / MAIN_MODEL_NAME))
    except OSError as exc:
        raise click.ClickException(f"cannot build the tiny main model in {directory}: {exc}") from exc
    try:
        from guards.tiny_guards import build_tiny_guards
    except ModuleNotFoundError as exc:
        if exc.name is None or not exc.name.startswith("guards"):
            raise
        notes.append("tiny guard models are pending (guards.tiny_guards is not available yet)")
    else:
        built.update({name: str(path) for name, path in build_tiny_guards(directory).items()})
    if as_json:
        click.echo(json.dumps(built, indent=2))
    else:
        for name, path in built.items():
            click.echo(f"{name}: {path}")
        click.echo("random weights, smoke tests only")
    for note in notes:
        click.echo(note, err=True)
    raise SystemExit(exit_codes.OK)

"""`assistant db migrate` and `assistant db status`: the thread store named by the policy's `storage` section.

migrate: create or upgrade its tables (LangGraph's checkpoint migrations; idempotent, safe to run on every deploy,
before the replicas start). status: which store, and whether its schema is current (exit 1 when it needs a migrate).
Exit 2 for a bad policy or an unreachable database.
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import click

from assistant.cli import exit_codes
from assistant.storage import StorageError, StorageTarget, schema_status, storage_target
from assistant.storage import migrate as run_migrate
from guards.policy import PolicyError, load_policy

NEEDS_MIGRATION = 1


@click.group()
def db() -> None:
    """Create, upgrade or inspect the thread store (storage: sqlite or postgres)."""


def _target(policy_file: Path | None, db_path: Path | None) -> StorageTarget:
    storage = None
    if policy_file is not None:
        try:
            storage = load_policy(policy_file).storage
        except PolicyError as exc:
            click.echo(f"error: {exc}", err=True)
            sys.exit(exit_codes.BAD_INPUT)
    try:
        return storage_target(storage, sqlite_path=db_path, policy_dir=policy_file.parent if policy_file else None)
    except StorageError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(exit_codes.BAD_INPUT)


_policy_option = click.option("--policy", "policy_file", type=click.Path(path_type=Path, dir_okay=False),
                              default=None, help="Policy file whose `storage` section names the store.")
_db_option = click.option("--db", "db_path", type=click.Path(path_type=Path, dir_okay=False), default=None,
                          help="SQLite file (overrides storage.path; sqlite only).")


@db.command("migrate")
@_policy_option
@_db_option
def migrate(policy_file: Path | None, db_path: Path | None) -> None:
    """Create or upgrade the thread store's tables (idempotent)."""
    target = _target(policy_file, db_path)
    try:
        click.echo(asyncio.run(run_migrate(target)))
    except StorageError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(exit_codes.BAD_INPUT)


@db.command("status")
@_policy_option
@_db_option
def status(policy_file: Path | None, db_path: Path | None) -> None:
    """Print the store and its schema version; exit 1 when `assistant db migrate` is needed."""
    target = _target(policy_file, db_path)
    try:
        line, current = asyncio.run(schema_status(target))
    except StorageError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(exit_codes.BAD_INPUT)
    click.echo(line)
    if not current:
        sys.exit(NEEDS_MIGRATION)

"""The key rule shared by `assistant serve` and `assistant chat --web`: beyond loopback only with API keys."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING

import click

from assistant.cli import exit_codes
from assistant.server.auth import KeyFileError, KeyStore, is_loopback

if TYPE_CHECKING:
    from assistant.server.auth import KeyStore


def keys_for_bind(host: str, api_keys_file: Path | None) -> KeyStore:
    """The API keys to serve with; exits 2 with the reason when they are unreadable or missing for a wide bind."""
    try:
        keys = KeyStore.load(api_keys_file)
    except KeyFileError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(exit_codes.BAD_INPUT)
    if not keys.enabled and not is_loopback(host):
        click.echo(f"error: refusing to listen on {host} without API keys: anyone who can reach it could use the "
                   "assistant. Give --api-keys-file FILE (or ASSISTANT_API_KEYS), or bind to 127.0.0.1.", err=True)
        sys.exit(exit_codes.BAD_INPUT)
    return keys

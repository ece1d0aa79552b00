"""API keys and thread ownership.

Keys come from `--api-keys-file` (one key per line; blank lines and `#` comments ignored) or `ASSISTANT_API_KEYS`
(comma-separated). Only their SHA-256 digests are kept in memory; a presented Bearer token is hashed and compared
with every stored digest in constant time (`hmac.compare_digest`, no early exit). A key's id (a digest prefix) owns
the threads it created; ownership lives in a small SQLite table next to the threads database, so it survives restarts.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import sqlite3
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

ENV_KEYS = "ASSISTANT_API_KEYS"
ANONYMOUS = "anonymous"  # the one identity of a keyless (loopback-only) server
MIN_KEY_CHARS = 16


class KeyFileError(ValueError):
    """The keys file or variable cannot be used (names the file and line)."""


def _digest(key: str) -> bytes:
    return hashlib.sha256(key.encode("utf-8")).digest()


@dataclass(frozen=True)
class KeyStore:
    digests: tuple[bytes, ...]

    @property
    def enabled(self) -> bool:
        return bool(self.digests)

    @classmethod
    def from_keys(cls, keys: Iterable[str]) -> KeyStore:
        return cls(tuple(dict.fromkeys(_digest(k) for k in keys)))

    @classmethod
    def load(cls, path: Path | None, env: str | None = None) -> KeyStore:
        """Keys from the file (when given) plus the environment variable; too short keys are an error."""
        keys: list[str] = []
        if path is not None:
            try:
                lines = Path(path).read_text(encoding="utf-8").splitlines()
            except (OSError, UnicodeDecodeError) as exc:
                raise KeyFileError(f"{path}: cannot read the API keys file: {exc}") from exc
            for number, line in enumerate(lines, start=1):
                key = line.strip()
                if not key or key.startswith("#"):
                    continue
                if len(key) < MIN_KEY_CHARS or any(c.isspace() for c in key):
                    raise KeyFileError(f"{path}:{number}: an API key must be one word of at least {MIN_KEY_CHARS} "
                                       "characters")
                keys.append(key)
        env_value = os.environ.get(ENV_KEYS, "") if env is None else env
        for key in (k.strip() for k in env_value.split(",")):
            if not key:
                continue
            if len(key) < MIN_KEY_CHARS:
                raise KeyFileError(f"{ENV_KEYS}: every API key must have at least {MIN_KEY_CHARS} characters")
            keys.append(key)
        return cls.from_keys(keys)

    def identify(self, authorization: str | None) -> str | None:
        """The key id for an `Authorization: Bearer KEY` header, or None when missing or wrong. Without keys every
        caller is ANONYMOUS."""
        if not self.enabled:
            return ANONYMOUS
        if not authorization:
            return None
        scheme, _, token = authorization.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            return None
        presented = _digest(token.strip())
        found: bytes | None = None
        for stored in self.digests:  # every digest compared: the time does not depend on which key matched
            if hmac.compare_digest(presented, stored):
                found = stored
        return found.hex()[:16] if found is not None else None


class ThreadOwners(Protocol):
    """Which API key owns which thread: `Owners` (SQLite, one replica) or `assistant.storage.PostgresOwners`."""

    def claim(self, thread_id: str, key_id: str) -> None: ...
    def owner(self, thread_id: str) -> str | None: ...
    def owns(self, thread_id: str, key_id: str) -> bool: ...
    def forget(self, thread_id: str) -> None: ...
    def close(self) -> None: ...


class Owners:
    """thread id -> key id, in SQLite (one short transaction per call; safe across threads of one process)."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._db = sqlite3.connect(str(path), check_same_thread=False, timeout=30)
        with self._lock, self._db:
            self._db.execute("CREATE TABLE IF NOT EXISTS owners (thread_id TEXT PRIMARY KEY, key_id TEXT NOT NULL)")

    def claim(self, thread_id: str, key_id: str) -> None:
        with self._lock, self._db:
            self._db.execute("INSERT OR REPLACE INTO owners VALUES (?, ?)", (thread_id, key_id))

    def owner(self, thread_id: str) -> str | None:
        with self._lock:
            row = self._db.execute("SELECT key_id FROM owners WHERE thread_id = ?", (thread_id,)).fetchone()
        return row[0] if row else None

    def owns(self, thread_id: str, key_id: str) -> bool:
        owner = self.owner(thread_id)
        return owner is not None and hmac.compare_digest(owner, key_id)

    def forget(self, thread_id: str) -> None:
        with self._lock, self._db:
            self._db.execute("DELETE FROM owners WHERE thread_id = ?", (thread_id,))

    def close(self) -> None:
        self._db.close()


def is_loopback(host: str) -> bool:
    import ipaddress

    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False

"""Where threads live: the policy's `storage` section -> a LangGraph checkpointer (`open_checkpointer`), and the
migrations that create its tables (`migrate`, run by `assistant db migrate`).

- `sqlite` (default): `AsyncSqliteSaver` on one local file; it creates its tables itself.
- `postgres`: `AsyncPostgresSaver` (langgraph-checkpoint-postgres) on the URL in the environment variable the policy
  names. Any number of processes (`assistant serve` replicas) share the database: a thread, or a pending approval,
  started in one continues in another. Its tables come from `assistant db migrate` (LangGraph's own migrations); a
  process never migrates on its own, it checks the schema version once and refuses to run on an older one.

A checkpointer is opened per stream (one connection): async database connections belong to the event loop that
opened them, and `Assistant.run` starts a fresh loop per call.

Approval claims (`claim_approval`): before a paused thread is resumed with a decision, the decider inserts a row
(thread, checkpoint, call) into `assistant_approval_claims` in the same store (SQLite: the same file, created on first
use; PostgreSQL: by `assistant db migrate`). The primary key lets exactly one of several processes that read the
same pending approval win it; the others are told the call is being decided. The row is deleted when the resumed run
has written its state (a row left by a crashed process expires after `CLAIM_STALE_S`).
"""

from __future__ import annotations

import os
import time
import weakref
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from assistant.home import data_dir

OWNERS_TABLE = "assistant_thread_owners"  # `assistant serve`: which API key owns which thread, for every replica
_OWNERS_DDL = f"CREATE TABLE IF NOT EXISTS {OWNERS_TABLE} (thread_id TEXT PRIMARY KEY, key_id TEXT NOT NULL)"
_CHECKED_URLS: set[str] = set()  # postgres URLs whose schema version was found current in this process
THREAD_LOCK_TIMEOUT_S = 600.0  # longest wait for another replica's turn on the same thread
CLAIMS_TABLE = "assistant_approval_claims"  # who decides a pending approval now, for every process sharing the store
_CLAIMS_DDL = (
    f"CREATE TABLE IF NOT EXISTS {CLAIMS_TABLE} (thread_id TEXT NOT NULL, checkpoint_id TEXT NOT NULL, call_id TEXT "
    "NOT NULL, claimed_at DOUBLE PRECISION NOT NULL, PRIMARY KEY (thread_id, checkpoint_id, call_id))"
)
CLAIM_STALE_S = 3600.0  # a claim this old is a crashed process's: another decider may take the call over
_SQLITE_CLAIMS_READY: weakref.WeakSet[Any] = weakref.WeakSet()  # savers whose file has the claims table


class StorageError(Exception):
    """The thread store is misconfigured or unreachable; the message says what and how to fix it."""


@dataclass(frozen=True)
class StorageTarget:
    backend: str  # sqlite | postgres
    sqlite_path: Path | None = None
    url: str | None = None

    def describe(self) -> str:
        """For messages: the file, or the URL without its password."""
        if self.backend == "sqlite":
            return f"sqlite:{self.sqlite_path}"
        return f"postgres:{redact_url(self.url or '')}"


def redact_url(url: str) -> str:
    """`postgresql://user:secret@host/db` -> `postgresql://user:***@host/db`."""
    scheme, sep, rest = url.partition("://")
    if not sep or "@" not in rest:
        return url
    credentials, _, host = rest.rpartition("@")
    user = credentials.split(":", 1)[0]
    return f"{scheme}://{user}:***@{host}" if ":" in credentials else url


def storage_target(config: Any, *, sqlite_path: Path | None = None, policy_dir: Path | None = None) -> StorageTarget:
    """Resolve the policy's `storage` (None = the default sqlite). `sqlite_path` (an explicit `db_path`) wins over
    `storage.path`; a relative `storage.path` is taken from the policy file's folder."""
    backend = getattr(config, "backend", "sqlite")
    if backend == "postgres":
        name = config.url_env
        url = os.environ.get(name, "").strip()
        if not url:
            raise StorageError(
                f"storage.backend is postgres but the environment variable {name} (storage.url_env) is not set; set "
                "it to the database URL, e.g. postgresql://assistant:PASSWORD@db-host:5432/assistant"
            )
        if not url.startswith(("postgresql://", "postgres://")):
            raise StorageError(f"{name} must hold a postgresql:// URL, got {redact_url(url)[:60]!r}")
        return StorageTarget("postgres", url=url)
    if backend != "sqlite":
        raise StorageError(f"unknown storage.backend {backend!r} (sqlite or postgres)")
    path = sqlite_path
    configured = getattr(config, "path", None)
    if path is None and configured:
        path = Path(configured).expanduser()
        if not path.is_absolute() and policy_dir is not None:
            path = policy_dir / path
    if path is None:

        path = data_dir() / "threads.sqlite"
    return StorageTarget("sqlite", sqlite_path=Path(path))


@asynccontextmanager
async def open_checkpointer(target: StorageTarget, *, lock_thread: str | None = None) -> AsyncIterator[Any]:
    """A checkpointer on `target` for the duration of one stream. `lock_thread`: hold that thread's lock meanwhile
    (PostgreSQL: an advisory lock on this stream's connection, so one turn at a time per thread across every
    replica; two turns run at once would each extend the same checkpoint and one would be lost)."""
    if target.backend == "sqlite":
        from langgraph.checkpoint.sqlite.aio import AsyncSqliteSaver

        assert target.sqlite_path is not None
        target.sqlite_path.parent.mkdir(parents=True, exist_ok=True)
        async with AsyncSqliteSaver.from_conn_string(str(target.sqlite_path)) as saver:
            yield saver
        return
    async with _postgres_saver(target) as saver:
        if target.url not in _CHECKED_URLS:
            await _check_schema(saver, target)
            _CHECKED_URLS.add(target.url or "")
        if lock_thread is not None:
            await _lock_thread(saver, lock_thread, target)
        yield saver  # the lock goes with the connection when the stream ends


async def list_threads(target: StorageTarget) -> list[str]:
    """The ids of the threads `target` holds, the most recently updated first (any surface's: the chat, `assistant
    run`, a script, `assistant serve`). A SQLite file that does not exist yet holds none (and is not created)."""
    if target.backend == "sqlite":
        assert target.sqlite_path is not None
        if not target.sqlite_path.is_file():
            return []
    async with open_checkpointer(target) as saver:
        return await _thread_ids(saver)


_THREADS_SQL = "SELECT thread_id, MAX(checkpoint_id) AS last FROM checkpoints GROUP BY thread_id ORDER BY last DESC"


async def _thread_ids(saver: Any) -> list[str]:
    """One query on the checkpointer's own table (checkpoint ids grow with time: a thread's largest is its latest),
    instead of reading every checkpoint through `alist`."""
    kind = _store_kind(saver)
    if kind == "sqlite":
        await saver.setup()  # a file written by something else: its tables come now
        async with saver.lock:
            cursor = await saver.conn.execute(_THREADS_SQL)
            rows = await cursor.fetchall()
        return [str(row[0]) for row in rows]
    if kind == "postgres":
        async with saver.lock, saver.conn.cursor() as cursor:
            await cursor.execute(_THREADS_SQL)
            rows = await cursor.fetchall()
        return [str(_first(row)) for row in rows]
    seen: dict[str, None] = {}  # another checkpointer (in-memory in tests): its public listing
    async for checkpoint in saver.alist(None):
        seen.setdefault(str(checkpoint.config["configurable"]["thread_id"]), None)
    return list(seen)


def _store_kind(saver: Any) -> str | None:
    """sqlite / postgres for the two stores claims live in; None for others (in-memory: one process only)."""
    module = type(saver).__module__
    if module.startswith("langgraph.checkpoint.sqlite"):
        return "sqlite"
    if module.startswith("langgraph.checkpoint.postgres"):
        return "postgres"
    return None


async def claim_approval(saver: Any, thread_id: str, checkpoint_id: str, call_id: str) -> bool:
    """Claim the decision on the call `call_id` the thread waits for at `checkpoint_id`: True for exactly one claimant
    across every process sharing the store (True as well on stores only one process uses). Release it with
    `release_approval` once the resumed run has written its state."""
    kind = _store_kind(saver)
    key = (thread_id, checkpoint_id, call_id)
    now = time.time()
    if kind == "sqlite":
        async with saver.lock:
            if saver not in _SQLITE_CLAIMS_READY:
                await saver.conn.execute(_CLAIMS_DDL)
                await saver.conn.commit()
                _SQLITE_CLAIMS_READY.add(saver)
            # one transaction: a stale row goes and the new one comes in under the file's write lock
            await saver.conn.execute(f"DELETE FROM {CLAIMS_TABLE} WHERE thread_id = ? AND checkpoint_id = ? AND "
                                     "call_id = ? AND claimed_at < ?", (*key, now - CLAIM_STALE_S))
            cursor = await saver.conn.execute(f"INSERT OR IGNORE INTO {CLAIMS_TABLE} VALUES (?, ?, ?, ?)", (*key, now))
            won = cursor.rowcount == 1
            await saver.conn.commit()
        return won
    if kind == "postgres":
        async with saver.lock:
            await saver.conn.execute(f"DELETE FROM {CLAIMS_TABLE} WHERE thread_id = %s AND checkpoint_id = %s AND "
                                     "call_id = %s AND claimed_at < %s", (*key, now - CLAIM_STALE_S))
            cursor = await saver.conn.execute(
                f"INSERT INTO {CLAIMS_TABLE} VALUES (%s, %s, %s, %s) ON CONFLICT DO NOTHING", (*key, now)
            )
            return cursor.rowcount == 1
    return True


async def release_approval(saver: Any, thread_id: str, checkpoint_id: str, call_id: str) -> None:
    """Drop a claim (the resumed run wrote its state, or did not start)."""
    kind = _store_kind(saver)
    key = (thread_id, checkpoint_id, call_id)
    if kind == "sqlite":
        async with saver.lock:
            await saver.conn.execute(
                f"DELETE FROM {CLAIMS_TABLE} WHERE thread_id = ? AND checkpoint_id = ? AND call_id = ?", key
            )
            await saver.conn.commit()
    elif kind == "postgres":
        async with saver.lock:
            await saver.conn.execute(
                f"DELETE FROM {CLAIMS_TABLE} WHERE thread_id = %s AND checkpoint_id = %s AND call_id = %s", key
            )


async def _lock_thread(saver: Any, thread_id: str, target: StorageTarget) -> None:
    import psycopg

    try:
        await saver.conn.execute(f"SET lock_timeout = '{int(THREAD_LOCK_TIMEOUT_S * 1000)}ms'")
        await saver.conn.execute("SELECT pg_advisory_lock(hashtextextended(%s, 0))", (thread_id,))
    except psycopg.errors.LockNotAvailable as exc:
        raise StorageError(
            f"thread {thread_id!r} stayed busy with another turn for {THREAD_LOCK_TIMEOUT_S:g} s "
            f"({target.describe()}); try again later"
        ) from exc


@asynccontextmanager
async def _postgres_saver(target: StorageTarget) -> AsyncIterator[Any]:
    import psycopg
    from langgraph.checkpoint.postgres.aio import AsyncPostgresSaver

    try:
        manager = AsyncPostgresSaver.from_conn_string(target.url or "")
        saver = await manager.__aenter__()
    except psycopg.Error as exc:
        raise StorageError(f"cannot connect to the thread database {target.describe()}: {_first_line(exc)}") from exc
    try:
        yield saver
    except BaseException as exc:
        if not await manager.__aexit__(type(exc), exc, exc.__traceback__):
            raise
    else:
        await manager.__aexit__(None, None, None)


async def _check_schema(saver: Any, target: StorageTarget) -> None:
    current, latest = await schema_version(saver)
    if current < latest:
        state = "has no tables yet" if current < 0 else f"is at schema version {current}, this release needs {latest}"
        raise StorageError(
            f"the thread database {target.describe()} {state}: run `assistant db migrate --policy POLICY` once "
            "(with the same storage settings and environment) before starting the assistant"
        )


async def schema_version(saver: Any) -> tuple[int, int]:
    """(the database's applied migration version or -1, the version this langgraph-checkpoint-postgres needs)."""
    import psycopg

    latest = len(saver.MIGRATIONS) - 1
    async with saver.conn.cursor() as cursor:
        try:
            await cursor.execute("SELECT max(v) AS v FROM checkpoint_migrations")
        except psycopg.errors.UndefinedTable:
            return -1, latest
        row = await cursor.fetchone()
        await cursor.execute(f"SELECT to_regclass('{OWNERS_TABLE}') AS t")
        owners = await cursor.fetchone()
        await cursor.execute(f"SELECT to_regclass('{CLAIMS_TABLE}') AS t")
        claims = await cursor.fetchone()
    value = _first(row)
    current = -1 if value is None else int(value)
    if _first(owners) is None or _first(claims) is None:  # our own tables, created by the same `assistant db migrate`
        current = min(current, latest - 1)
    return current, latest


def _first(row: Any) -> Any:
    if row is None:
        return None
    return next(iter(row.values())) if isinstance(row, dict) else row[0]


async def migrate(target: StorageTarget) -> str:
    """Create or upgrade the thread store's tables (idempotent); a line saying what was done."""
    if target.backend == "sqlite":
        async with open_checkpointer(target) as saver:
            await saver.setup()
            await saver.conn.execute(_CLAIMS_DDL)
            await saver.conn.commit()
        return f"{target.describe()}: ready"
    async with _postgres_saver(target) as saver:
        before, _ = await schema_version(saver)
        await saver.setup()
        await saver.conn.execute(_OWNERS_DDL)
        await saver.conn.execute(_CLAIMS_DDL)
        after, _ = await schema_version(saver)
    _CHECKED_URLS.discard(target.url or "")
    if before == after:
        return f"{target.describe()}: already at schema version {after}"
    return f"{target.describe()}: migrated from {'no tables' if before < 0 else f'version {before}'} to version {after}"


async def schema_status(target: StorageTarget) -> tuple[str, bool]:
    """A line describing the store's schema, and whether it is current (SQLite creates its tables on first use)."""
    if target.backend == "sqlite":
        assert target.sqlite_path is not None
        state = "exists" if target.sqlite_path.is_file() else "not created yet (created on first use)"
        return f"{target.describe()}: {state}", True
    async with _postgres_saver(target) as saver:
        current, latest = await schema_version(saver)
    if current < latest:
        state = "no tables" if current < 0 else f"schema version {current}"
        return f"{target.describe()}: {state}, needs version {latest}: run `assistant db migrate`", False
    return f"{target.describe()}: schema version {current} (current)", True


class PostgresOwners:
    """`assistant serve`'s thread -> API key table in the shared database (the SQLite `Owners` interface), so a
    thread created through one replica is the same caller's on every replica. A small pool reconnects on its own."""

    def __init__(self, url: str) -> None:
        from psycopg_pool import ConnectionPool

        self._pool = ConnectionPool(url, min_size=1, max_size=4, kwargs={"autocommit": True}, open=True)

    def claim(self, thread_id: str, key_id: str) -> None:
        with self._pool.connection() as conn:
            conn.execute(
                f"INSERT INTO {OWNERS_TABLE} VALUES (%s, %s) ON CONFLICT (thread_id) DO UPDATE SET key_id = "
                "EXCLUDED.key_id",
                (thread_id, key_id),
            )

    def owner(self, thread_id: str) -> str | None:
        with self._pool.connection() as conn:
            row = conn.execute(f"SELECT key_id FROM {OWNERS_TABLE} WHERE thread_id = %s", (thread_id,)).fetchone()
        return str(row[0]) if row else None

    def owns(self, thread_id: str, key_id: str) -> bool:
        import hmac

        owner = self.owner(thread_id)
        return owner is not None and hmac.compare_digest(owner, key_id)

    def forget(self, thread_id: str) -> None:
        with self._pool.connection() as conn:
            conn.execute(f"DELETE FROM {OWNERS_TABLE} WHERE thread_id = %s", (thread_id,))

    def close(self) -> None:
        self._pool.close()


def shared_owners(policy: Any) -> PostgresOwners | None:
    """The owners table for `assistant serve` when threads live in PostgreSQL (None: keep the local SQLite one)."""
    storage = getattr(policy, "storage", None)
    if getattr(storage, "backend", "sqlite") != "postgres":
        return None
    target = storage_target(storage)
    return PostgresOwners(target.url or "")


def _first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]


__all__ = [
    "PostgresOwners",
    "StorageError",
    "StorageTarget",
    "claim_approval",
    "list_threads",
    "migrate",
    "open_checkpointer",
    "redact_url",
    "release_approval",
    "schema_status",
    "shared_owners",
    "storage_target",
]

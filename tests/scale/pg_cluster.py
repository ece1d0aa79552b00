"""A throwaway PostgreSQL cluster for tests: `initdb` into a fresh temporary folder, `pg_ctl start` on a free
localhost port (TCP only, no Unix socket), removed afterwards. Debian's `postgresql` package provides the binaries
(`make setup` installs it when missing). initdb refuses to run as root, so as root the cluster belongs to and runs
as the unprivileged `nobody` user. Durability settings are off: a test cluster needs speed, not crash safety.
"""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

NOBODY = 65534
SETTINGS = """
listen_addresses = '127.0.0.1'
port = {port}
unix_socket_directories = ''
fsync = off
synchronous_commit = off
full_page_writes = off
max_connections = 120
shared_buffers = 32MB
"""


class PostgresMissing(RuntimeError):
    pass


def pg_bindir() -> Path:
    """The folder holding initdb and pg_ctl: on PATH, else Debian's /usr/lib/postgresql/<version>/bin (newest)."""
    found = shutil.which("initdb")
    if found:
        return Path(os.path.realpath(found)).parent
    candidates = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(p.split("/")[4]))
    if candidates:
        return Path(candidates[-1]).parent
    raise PostgresMissing(
        "PostgreSQL is not installed (no initdb on PATH or under /usr/lib/postgresql); `make setup` installs Debian's "
        "postgresql package when run as root, or install it yourself (apt-get install postgresql)"
    )


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Cluster:
    root: Path
    port: int
    bindir: Path
    as_user: dict[str, Any]

    @property
    def data(self) -> Path:
        return self.root / "data"

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"

    def run(self, *args: str, timeout: float = 120) -> None:
        result = subprocess.run(args, capture_output=True, text=True, timeout=timeout, cwd=self.root, **self.as_user)
        if result.returncode != 0:
            server_log = self.root / "server.log"
            log = server_log.read_text(errors="replace")[-2000:] if server_log.exists() else ""
            raise RuntimeError(f"{args[0]} failed ({result.returncode}): {result.stderr[-2000:]}\n{log}")

    def create_database(self, name: str) -> str:
        import psycopg

        with psycopg.connect(self.url(), autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)

    def stop(self) -> None:
        try:
            self.run(str(self.bindir / "pg_ctl"), "-D", str(self.data), "-m", "immediate", "-w", "stop", timeout=60)
        finally:
            shutil.rmtree(self.root, ignore_errors=True)


def start_cluster() -> Cluster:
    bindir = pg_bindir()
    root = Path(tempfile.mkdtemp(prefix="assistant-pg-"))
    as_user: dict[str, Any] = {}
    if os.geteuid() == 0:
        os.chown(root, NOBODY, NOBODY)
        as_user = {"user": NOBODY, "group": NOBODY, "extra_groups": [], "env": {"PATH": "/usr/bin:/bin", "LANG": "C"}}
    port = free_port()
    cluster = Cluster(root, port, bindir, as_user)
    try:
        cluster.run(str(bindir / "initdb"), "-D", str(cluster.data), "-U", "postgres", "--auth=trust", "-E", "UTF8",
                    "--locale=C", "--no-sync")
        with (cluster.data / "postgresql.conf").open("a", encoding="utf-8") as conf:
            conf.write(SETTINGS.format(port=port))
        cluster.run(str(bindir / "pg_ctl"), "-D", str(cluster.data), "-l", str(root / "server.log"), "-w", "-t", "60",
                    "start")
    except BaseException:
        shutil.rmtree(root, ignore_errors=True)
        raise
    return cluster

"""A throw-away PostgreSQL for tests and benchmarks: ``initdb`` into a private folder, listening on
127.0.0.1 (and a Unix socket in that folder) only, started, restarted and stopped with ``pg_ctl`` on that
folder, so exactly this server is touched.

``initdb`` refuses to run as root; as root every PostgreSQL program runs as the ``postgres`` system user
the distribution's package creates (``runuser -u postgres``), and the folder is handed to it.
Authentication is ``trust`` for the one role ``mer``: the server is reachable from this machine only.
"""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path


def pg_bin(name: str) -> str | None:
    """A PostgreSQL server program: on PATH, else Debian's /usr/lib/postgresql/<version>/bin."""
    found = shutil.which(name)
    if found:
        return found
    hits = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))
    return hits[-1] if hits else None


@dataclass
class Postgres:
    root: Path
    port: int

    @property
    def data(self) -> Path:
        return self.root / "data"

    def url(self, db: str, driver: str = "postgresql+psycopg") -> str:
        return f"{driver}://mer@127.0.0.1:{self.port}/{db}"

    def _run(self, *argv: str, timeout: float = 120) -> subprocess.CompletedProcess:
        cmd = list(argv)
        if os.geteuid() == 0:
            cmd = ["runuser", "-u", "postgres", "--", *cmd]
        return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=True)

    def pg_ctl(self, action: str, *extra: str) -> None:
        opts = f"-c listen_addresses=127.0.0.1 -p {self.port} -k {self.root} -c fsync=off"
        self._run(pg_bin("pg_ctl") or "pg_ctl", "-D", str(self.data), "-l", str(self.root / "log"), "-w",
                  "-o", opts, action, *extra)

    def postmaster_pid(self) -> int | None:
        pid_file = self.data / "postmaster.pid"
        return int(pid_file.read_text().split()[0]) if pid_file.exists() else None

    def createdb(self, name: str) -> None:
        import psycopg

        with psycopg.connect(self.url("postgres", "postgresql"), autocommit=True) as con:
            con.execute(f'CREATE DATABASE "{name}"')


def start(databases: tuple[str, ...], port: int) -> Postgres:
    """initdb + start on ``port``; the databases created. Raises when PostgreSQL is not installed."""
    if pg_bin("initdb") is None:
        raise FileNotFoundError("initdb not found (Debian: apt-get install postgresql)")
    root = Path(tempfile.mkdtemp(prefix="mer-pg-", dir="/tmp"))  # /tmp: the postgres user can reach it
    if os.geteuid() == 0:
        shutil.chown(root, "postgres")
    pg = Postgres(root, port)
    pg._run(pg_bin("initdb"), "-D", str(pg.data), "-A", "trust", "-U", "mer", "-E", "UTF8", "--no-sync")
    pg.pg_ctl("start")
    for db in databases:
        pg.createdb(db)
    return pg


def stop(pg: Postgres) -> None:
    """Stop this server (fast shutdown) and remove its folder."""
    try:
        if pg.postmaster_pid() is not None:
            pg.pg_ctl("stop", "-m", "fast")
    finally:
        shutil.rmtree(pg.root, ignore_errors=True)

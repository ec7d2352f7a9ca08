"""Where the benchmark's labs keep their state: SQLite in each lab's data directory, or a
database of its own per lab on a PostgreSQL server (issue 22).

In: the choice (``sqlite`` or ``postgresql``) and, for PostgreSQL, the admin URL of an
existing server, or none: then a throwaway server is started for the run (the checkout's
``tests/pg.py``, fsync on). Out: ``Stores.new()``, the ``--store`` of a new lab (a fresh
empty database's URL; None for SQLite), the server's postmaster pid (for its CPU time,
when it runs on this machine), and ``close()``, which stops the throwaway server or drops
the databases made on the existing one.
"""

from __future__ import annotations

import contextlib
import sys
import uuid
from pathlib import Path
from typing import Protocol
from urllib.parse import urlsplit, urlunsplit

import psycopg
from psycopg import sql

from bench.procs import log

KINDS = ("sqlite", "postgresql")
ROOT = Path(__file__).resolve().parents[1]


class _Server(Protocol):
    def url(self, dbname: str = "postgres") -> str: ...
    def stop(self) -> None: ...


def throwaway_server() -> _Server:
    """A PostgreSQL cluster of its own, started now (tests/pg.py of this checkout)."""
    if not (ROOT / "tests" / "pg.py").exists():
        raise RuntimeError("--store postgresql without --store-url needs the checkout's"
                           " tests/pg.py; give an existing server with --store-url")
    # tests/ is not installed with the project: it is found next to bench/.
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    from tests.pg import PostgresServer

    server = PostgresServer()
    server.start()
    return server


def database_url(admin_url: str, name: str) -> str:
    """``admin_url`` with its database replaced by ``name`` (user, host, options kept)."""
    parts = urlsplit(admin_url)
    return urlunsplit(parts._replace(path="/" + name))


def postmaster_pid(url: str) -> int | None:
    """The pid of the server's postmaster when it runs on this machine (the parent of the
    backend that answers us), else None."""
    with (contextlib.suppress(psycopg.Error, OSError, ValueError),
          psycopg.connect(url, autocommit=True) as conn):
        row = conn.execute("SELECT pg_backend_pid()").fetchone()
        backend = int(row[0]) if row else 0
        status = Path(f"/proc/{backend}/status").read_text()
        parent = int(next(line.split()[1] for line in status.splitlines()
                          if line.startswith("PPid:")))
        # A backend of a server elsewhere may share its pid with anything here.
        if Path(f"/proc/{parent}/comm").read_text().strip() in ("postgres", "postmaster"):
            return parent
    return None


class Stores:
    """The stores of one run's labs (SQLite unless told otherwise)."""

    def __init__(self, kind: str = "sqlite", admin_url: str | None = None,
                 keep: bool = False) -> None:
        if kind not in KINDS:
            raise ValueError(f"unknown store {kind!r}")
        self.kind = kind
        self.admin_url = admin_url
        self.keep = keep
        self.server: _Server | None = None
        self.made: list[str] = []
        self.postmaster: int | None = None

    def open(self) -> None:
        """Start the throwaway server when PostgreSQL is asked for without a server."""
        if self.kind != "postgresql":
            return
        if self.admin_url is None:
            self.server = throwaway_server()
            self.admin_url = self.server.url()
            log(f"started a throwaway PostgreSQL server: {self.admin_url}")
        self.postmaster = postmaster_pid(self.admin_url)

    def new(self) -> str | None:
        """The ``--store`` of a new lab: a fresh empty database, or None (SQLite)."""
        if self.kind != "postgresql":
            return None
        if self.admin_url is None:
            raise RuntimeError("Stores.open() was not called")
        name = f"bench_{len(self.made) + 1}_{uuid.uuid4().hex[:10]}"
        # CREATE DATABASE cannot run in a transaction: autocommit.
        with psycopg.connect(self.admin_url, autocommit=True) as conn:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        self.made.append(name)
        return database_url(self.admin_url, name)

    def close(self) -> None:
        """Stop the throwaway server, or drop what this run made on an existing one (after
        the labs stopped: FORCE ends a connection left behind)."""
        if self.server is not None:
            self.server.stop()
            self.server = None
        elif self.made and self.admin_url and not self.keep:
            with contextlib.suppress(psycopg.Error), psycopg.connect(
                    self.admin_url, autocommit=True) as conn:
                for name in self.made:
                    conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)")
                                 .format(sql.Identifier(name)))
        self.made.clear()

"""The embedded store: SQLite with WAL, synchronous=FULL and durable group commit.

In: callables that take a ``Tx`` (writes) or a connection (reads), from the
event loop. Out: their results, after the write has been committed and
fsynced; a write the disk has no room for fails with ``StoreFull``. Writes are
group-committed by ``stores.groupcommit`` on the only writing connection.
Reads run on a small pool of read-only connections, so a scrape or a listing
never waits behind the writer.

Schema changes are versioned migrations applied in order at open.
"""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TypeVar

from stores import meta
from stores.backend import Fact, StoreError, StoreFull
from stores.clock import Clock
from stores.groupcommit import GroupCommit, StoreClosed, Tx
from stores.readers import Readers
from stores.schema import MIGRATIONS

T = TypeVar("T")

SCHEMA_VERSION = len(MIGRATIONS)

__all__ = ["SCHEMA_VERSION", "Store", "StoreClosed", "Tx", "connect", "migrate", "tx"]


def _classified(exc: Exception) -> Exception:
    """``exc``, or for an error of SQLite itself the backend's own: StoreFull when the disk
    (or the database) is full (SQLITE_FULL), else StoreError, so nothing above ``stores``
    needs to know it is SQLite."""
    if not isinstance(exc, sqlite3.Error):
        return exc
    full = getattr(exc, "sqlite_errorcode", None) == sqlite3.SQLITE_FULL
    error = (StoreFull if full else StoreError)(str(exc))
    error.__cause__ = exc
    return error


def tx(conn: sqlite3.Connection, now: float, real: float) -> Tx:
    """A write's view of ``conn``: its own bound methods, so a statement costs no extra call."""
    return Tx(conn.execute, conn.executemany, now, real)


class _SQLite:
    """How the SQLite writer runs a transaction (``stores.groupcommit.Dialect``)."""

    def begin(self, conn: sqlite3.Connection) -> None:
        conn.execute("BEGIN IMMEDIATE")

    def commit(self, conn: sqlite3.Connection) -> None:
        conn.execute("COMMIT")

    def rollback(self, conn: sqlite3.Connection) -> None:
        if conn.in_transaction:
            conn.execute("ROLLBACK")

    def savepoint(self, conn: sqlite3.Connection) -> None:
        conn.execute("SAVEPOINT w")

    def release(self, conn: sqlite3.Connection) -> None:
        conn.execute("RELEASE w")

    def rollback_to(self, conn: sqlite3.Connection) -> None:
        conn.execute("ROLLBACK TO w")

    tx = staticmethod(tx)
    classified = staticmethod(_classified)

    def retryable(self, exc: Exception) -> bool:
        return False  # one process, one writer: nothing to lose a race to

    def close(self, conn: sqlite3.Connection) -> None:
        conn.close()


def connect(path: Path, *, readonly: bool = False) -> sqlite3.Connection:
    if readonly:
        conn = sqlite3.connect(
            f"file:{path}?mode=ro", uri=True, check_same_thread=False, isolation_level=None
        )
    else:
        conn = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        conn.execute("PRAGMA journal_mode=WAL")
    # FULL: the WAL is fsynced at every commit, so a 250 survives power loss.
    conn.execute("PRAGMA synchronous=FULL")
    conn.execute("PRAGMA foreign_keys=ON")
    conn.execute("PRAGMA busy_timeout=10000")
    conn.row_factory = sqlite3.Row
    return conn


def migrate(conn: sqlite3.Connection) -> None:
    conn.execute("CREATE TABLE IF NOT EXISTS schema_version(version INTEGER NOT NULL)")
    row = conn.execute("SELECT version FROM schema_version").fetchone()
    version = row[0] if row else 0
    if version > SCHEMA_VERSION:
        raise RuntimeError(
            f"data directory has schema version {version}; this mailflow knows {SCHEMA_VERSION}"
        )
    for step in range(version, SCHEMA_VERSION):
        conn.execute("BEGIN IMMEDIATE")
        try:
            for statement in MIGRATIONS[step].split(";"):
                if statement.strip():
                    conn.execute(statement)
            conn.execute("DELETE FROM schema_version")
            conn.execute("INSERT INTO schema_version VALUES (?)", (step + 1,))
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise


class Store(GroupCommit[sqlite3.Connection]):
    """The SQLite backend (``stores.backend.Backend``) of one lab. Writes are
    group-committed; reads use their own connections."""

    def __init__(
        self,
        path: Path,
        clock: Clock,
        on_commit: Callable[[list[Fact]], None] | None = None,
    ) -> None:
        self.path = path
        try:
            writer = connect(path)
            migrate(writer)
        except sqlite3.Error as exc:  # not a store, or one this user may not open
            raise _classified(exc) from exc
        self._readers = Readers(lambda: connect(path, readonly=True), sqlite3.Connection.close)
        super().__init__(writer, _SQLite(), clock, on_commit)

    # -- reads ----------------------------------------------------------------------------

    def read_sync(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Run ``fn`` on this thread's read connection, in one consistent snapshot."""
        conn = self._readers.conn()
        conn.execute("BEGIN")
        try:
            return fn(conn)
        finally:
            conn.execute("COMMIT")

    async def read(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        return await self._readers.run(self.read_sync, fn)

    def close(self) -> None:
        if self._closed:
            return
        self._stop_writer()
        self._readers.close()


@contextlib.contextmanager
def _offline(path: Path) -> Iterator[sqlite3.Connection]:
    """The store of a data directory whose lab is not running, migrated, for one look."""
    try:
        conn = connect(path)
        try:
            migrate(conn)
            yield conn
        finally:
            conn.close()
    except sqlite3.Error as exc:
        raise _classified(exc) from exc


def stored_meta(path: Path, key: str) -> str | None:
    """A ``meta`` value of a data directory's store, or None when it has no store yet."""
    if not path.exists():
        return None
    with _offline(path) as conn:
        return meta.get(conn, key)


def saved_clock(path: Path) -> float:
    """The simulated time a previous run of this data directory reached (``meta.reached``),
    or 0."""
    if not path.exists():
        return 0.0
    with _offline(path) as conn:
        return meta.reached(conn)

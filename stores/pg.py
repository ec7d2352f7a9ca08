"""The shared store: PostgreSQL through psycopg 3, for a lab in several processes or hosts.

In: a ``postgresql://`` URL, and callables that take a ``Tx`` (writes) or a connection
(reads), from the event loop. Out: their results, a write's only after PostgreSQL has
committed it (``synchronous_commit`` is left as the server has it: on, unless its operator
chose otherwise). Writes are group-committed by ``stores.groupcommit`` on one connection,
and the batches of all the lab's processes run one at a time (an advisory lock,
``WRITE_LOCK``), so that a lab in several processes changes its state as one in a single
process does; a batch that loses a deadlock to another process is run again. Reads run on
their own connections, each in one REPEATABLE READ READ ONLY transaction: the same
consistent snapshot a SQLite read sees. A connection that broke (the server restarted) is
opened again before its next use; the batch or read it broke fails with ``StoreError`` and
SMTP answers 451.

The query modules' SQL is SQLite's; ``stores.pgdialect`` spells it for PostgreSQL.
Migrations are those of ``stores.schema``, applied under an advisory lock so that
processes starting together migrate once.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Sequence
from typing import Any, TypeVar

import psycopg
from psycopg import errors
from psycopg.adapt import Buffer, Dumper, Loader
from psycopg.pq import Format

from stores import meta, pgdialect
from stores.backend import Fact, StoreError, StoreFull
from stores.clock import Clock
from stores.groupcommit import GroupCommit, Tx
from stores.readers import Readers
from stores.schema import MIGRATIONS

T = TypeVar("T")

SCHEMA_VERSION = len(MIGRATIONS)
# pg_advisory_xact_lock key under which one process at a time migrates (and seeds).
MIGRATE_LOCK = 0x6D61696C666C6F77  # "mailflow"
# pg_advisory_xact_lock key of a write batch: the lab's processes write one at a time.
WRITE_LOCK = MIGRATE_LOCK - 1


class Row(tuple[Any, ...]):
    """A result row read by index or by column name, as ``sqlite3.Row`` is."""

    _index: dict[str, int]

    def __getitem__(self, key: Any) -> Any:
        if isinstance(key, str):
            return tuple.__getitem__(self, self._index[key])
        return tuple.__getitem__(self, key)

    def keys(self) -> list[str]:
        return list(self._index)


def _rows(cursor: psycopg.Cursor[Any]) -> Callable[[Sequence[Any]], Row]:
    description = cursor.description or []
    index = {column.name: i for i, column in enumerate(description)}
    row_class = type("Row", (Row,), {"_index": index})

    def make(values: Sequence[Any]) -> Row:
        return row_class(values)  # type: ignore[no-any-return]

    return make


class _BoolAsInteger(Dumper):
    """The schema's flags are integers, as in SQLite: a Python bool is bound as 0 or 1."""

    oid = psycopg.adapters.types["int8"].oid

    def dump(self, obj: bool) -> bytes:
        return b"1" if obj else b"0"


class _NumericAsNumber(Loader):
    """SUM over integers is numeric in PostgreSQL: read it as SQLite gives it, an int (or a
    float), never a Decimal."""

    format = Format.TEXT

    def load(self, data: Buffer) -> int | float:
        text = bytes(data).decode()
        return int(text) if text.lstrip("-").isdigit() else float(text)


def connect(url: str) -> psycopg.Connection[Row]:
    """An autocommit connection (transactions are begun by hand, as in SQLite) whose rows
    read as ``Row``."""
    try:
        conn: psycopg.Connection[Row] = psycopg.connect(url, autocommit=True,
                                                        row_factory=_rows)
    except psycopg.Error as exc:
        raise classified(exc) from exc
    conn.adapters.register_dumper(bool, _BoolAsInteger)
    conn.adapters.register_loader("numeric", _NumericAsNumber)
    return conn


def _text_safe(value: Any) -> Any:
    # PostgreSQL's text holds no NUL (SQLite's does): a NUL in a subject or in a search is
    # kept and looked for as U+FFFD, the character that stands for one it cannot show.
    if isinstance(value, str) and "\x00" in value:
        return value.replace("\x00", "\ufffd")
    return value


def _bindable(parameters: Any) -> Any:
    if isinstance(parameters, dict):
        return {key: _text_safe(value) for key, value in parameters.items()}
    return [_text_safe(value) for value in parameters]


class PgConn:
    """A connection as the query modules see it: SQLite's SQL, run by PostgreSQL."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.raw = connect(url)

    def execute(self, sql: str, parameters: Any = (), /) -> psycopg.Cursor[Row]:
        return self.raw.execute(pgdialect.statement(sql), _bindable(parameters))

    def executemany(self, sql: str, parameters: Any, /) -> psycopg.Cursor[Row]:
        cursor = self.raw.cursor()
        cursor.executemany(pgdialect.statement(sql), map(_bindable, parameters))
        return cursor

    def ensure_open(self) -> None:
        """Open the connection again when the last one broke (a server restart)."""
        if self.raw.closed or self.raw.broken:
            self.raw.close()
            self.raw = connect(self.url)

    def close(self) -> None:
        self.raw.close()


def classified(exc: Exception) -> Exception:
    """``exc``, or for an error of PostgreSQL the backend's own: StoreFull for a full disk,
    else StoreError."""
    if not isinstance(exc, psycopg.Error):
        return exc
    error = (StoreFull if isinstance(exc, errors.DiskFull) else StoreError)(str(exc).strip())
    error.__cause__ = exc
    return error


def tx(conn: PgConn, now: float, real: float) -> Tx:
    return Tx(conn.execute, conn.executemany, now, real)


class _Postgres:
    """How the PostgreSQL writer runs a transaction (``stores.groupcommit.Dialect``)."""

    def begin(self, conn: PgConn) -> None:
        conn.ensure_open()
        conn.raw.execute("BEGIN")
        # One writer at a time in the whole lab, as in SQLite: every process's batch sees
        # what the others committed before it, and none interleaves with another.
        conn.raw.execute("SELECT pg_advisory_xact_lock(%s)", (WRITE_LOCK,))

    def commit(self, conn: PgConn) -> None:
        conn.raw.execute("COMMIT")

    def rollback(self, conn: PgConn) -> None:
        conn.raw.execute("ROLLBACK")

    def savepoint(self, conn: PgConn) -> None:
        conn.raw.execute("SAVEPOINT w")

    def release(self, conn: PgConn) -> None:
        conn.raw.execute("RELEASE SAVEPOINT w")

    def rollback_to(self, conn: PgConn) -> None:
        conn.raw.execute("ROLLBACK TO SAVEPOINT w")

    tx = staticmethod(tx)
    classified = staticmethod(classified)

    def retryable(self, exc: Exception) -> bool:
        return isinstance(exc, errors.DeadlockDetected | errors.SerializationFailure)

    def close(self, conn: PgConn) -> None:
        conn.close()


def migrate(conn: PgConn) -> None:
    """Bring the schema to ``SCHEMA_VERSION``: one transaction, one process at a time."""
    raw = conn.raw
    raw.execute("BEGIN")
    try:
        raw.execute("SELECT pg_advisory_xact_lock(%s)", (MIGRATE_LOCK,))
        raw.execute("CREATE TABLE IF NOT EXISTS schema_version(version BIGINT NOT NULL)")
        row = raw.execute("SELECT version FROM schema_version").fetchone()
        version = int(row[0]) if row else 0
        if version > SCHEMA_VERSION:
            raise StoreError(
                f"the database has schema version {version}; this mailflow knows"
                f" {SCHEMA_VERSION}")
        for step in range(version, SCHEMA_VERSION):
            for text in MIGRATIONS[step].split(";"):
                if text.strip():
                    for sql in pgdialect.migration(text):
                        raw.execute(sql)
        raw.execute("DELETE FROM schema_version")
        raw.execute("INSERT INTO schema_version VALUES (%s)", (SCHEMA_VERSION,))
        raw.execute("COMMIT")
    except BaseException as exc:
        raw.execute("ROLLBACK")
        if isinstance(exc, psycopg.Error):
            raise classified(exc) from exc
        raise


class PgStore(GroupCommit[PgConn]):
    """The PostgreSQL backend (``stores.backend.Backend``) of one lab process."""

    def __init__(self, url: str, clock: Clock,
                 on_commit: Callable[[list[Fact]], None] | None = None) -> None:
        self.url = url
        writer = PgConn(url)
        try:
            migrate(writer)
        except BaseException:
            writer.close()
            raise
        self._readers = Readers(lambda: PgConn(url), PgConn.close)
        super().__init__(writer, _Postgres(), clock, on_commit)

    def read_sync(self, fn: Callable[[PgConn], T]) -> T:
        """Run ``fn`` on this thread's read connection, in one consistent snapshot."""
        conn = self._readers.conn()
        conn.ensure_open()
        try:
            conn.raw.execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
            try:
                return fn(conn)
            finally:
                if not conn.raw.broken:
                    conn.raw.execute("ROLLBACK")
        except psycopg.Error as exc:
            raise classified(exc) from exc

    async def read(self, fn: Callable[[PgConn], T]) -> T:
        return await self._readers.run(self.read_sync, fn)

    def close(self) -> None:
        if self._closed:
            return
        self._stop_writer()
        self._readers.close()


@contextlib.contextmanager
def _offline(url: str) -> Iterator[PgConn]:
    conn = PgConn(url)
    try:
        migrate(conn)
        yield conn
    finally:
        conn.close()


def stored_meta(url: str, key: str) -> str | None:
    """A ``meta`` value of the database, or None when it holds no lab yet."""
    with _offline(url) as conn:
        return meta.get(conn, key)


def saved_clock(url: str) -> float:
    """The simulated time the organization has reached (``meta.reached``), or 0."""
    with _offline(url) as conn:
        return meta.reached(conn)

"""The embedded store: SQLite with WAL, synchronous=FULL and durable group commit.

In: callables that take a ``Tx`` (writes) or a connection (reads), from the
event loop. Out: their results, after the write has been committed and
fsynced; a write the disk has no room for fails with ``StoreFull``. One writer
thread owns the only writing connection; it takes every write waiting in its
inbox, runs them all in one transaction, commits once and then wakes all their
callers. When one of them fails, the batch is undone and run again with each
write in a savepoint of its own, so one failing write never undoes its
neighbours. A caller therefore never hears "done" before its data is on disk.
Reads run on a small pool of read-only connections, so a scrape or a listing
never waits behind the writer.

Schema changes are versioned migrations applied in order at open.
"""

from __future__ import annotations

import asyncio
import contextlib
import queue
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from stores import meta
from stores.backend import Fact, StoreError, StoreFull
from stores.clock import Clock
from stores.schema import MIGRATIONS

T = TypeVar("T")

SCHEMA_VERSION = len(MIGRATIONS)


class StoreClosed(RuntimeError):
    pass


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


TraceRow = tuple[str, str | None, str, str, str, float, float]


def _insert_traces(conn: sqlite3.Connection, rows: list[TraceRow]) -> None:
    conn.executemany(
        "INSERT INTO trace(message, rcpt, server, stage, detail, sim_time, real_time)"
        " VALUES (?,?,?,?,?,?,?)", rows,
    )


@dataclass
class Tx:
    """What a write sees (``stores.backend.Tx``): the connection inside an open transaction
    and the lab's time. The query modules of ``stores`` run their SQL on the Tx itself."""

    conn: sqlite3.Connection
    now: float
    real: float
    facts: list[Fact] = field(default_factory=list)
    # Trace rows wait here and are written in one statement for the whole batch (or the
    # write, ``flush_traces``): a delivery traces three stages, and nothing reads the trace
    # inside a write.
    traces: list[TraceRow] = field(default_factory=list)
    # The connection's own bound methods, not wrappers: a statement costs no extra call.
    execute: Callable[..., sqlite3.Cursor] = field(init=False, repr=False)
    executemany: Callable[..., sqlite3.Cursor] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self.execute = self.conn.execute
        self.executemany = self.conn.executemany

    def note(self, kind: str, value: float = 1.0, **labels: str) -> None:
        self.facts.append(Fact(kind, labels, value))

    def trace(
        self, message: str, rcpt: str | None, server: str, stage: str, detail: str = ""
    ) -> None:
        self.traces.append((message, rcpt, server, stage, detail, self.now, self.real))

    def flush_traces(self) -> None:
        _insert_traces(self.conn, self.traces)
        self.traces.clear()

    def event(
        self, source: str, event_id: int, level: str, server: str, text: str, category: str = ""
    ) -> None:
        self.conn.execute(
            "INSERT INTO events(source, event_id, level, category, server, text, sim_time,"
            " real_time) VALUES (?,?,?,?,?,?,?,?)",
            (source, event_id, level, category, server, text, self.now, self.real),
        )
        self.note("event", server=server, source=source, event_id=str(event_id))


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


@dataclass
class _Write:
    fn: Callable[[Tx], Any]
    loop: asyncio.AbstractEventLoop | None
    future: asyncio.Future[Any] | None
    done: threading.Event | None = None
    result: Any = None
    error: BaseException | None = None


def _settle(items: list[_Write]) -> None:
    """On the callers' event loop: hand each write's result or error to its caller."""
    for item in items:
        assert item.future is not None
        if item.future.done():  # the caller was cancelled
            continue
        if item.error is not None:
            item.future.set_exception(item.error)
        else:
            item.future.set_result(item.result)


class Store:
    """The SQLite backend (``stores.backend.Backend``) of one lab. Writes are
    group-committed; reads use their own connections."""

    MAX_BATCH = 512

    def __init__(
        self,
        path: Path,
        clock: Clock,
        on_commit: Callable[[list[Fact]], None] | None = None,
    ) -> None:
        self.path = path
        self.clock = clock
        self.on_commit = on_commit
        try:
            self._writer = connect(path)
            migrate(self._writer)
        except sqlite3.Error as exc:  # not a store, or one this user may not open
            raise _classified(exc) from exc
        self._inbox: queue.SimpleQueue[_Write | None] = queue.SimpleQueue()
        self._closed = False
        self._local = threading.local()
        self._read_conns: list[sqlite3.Connection] = []
        self._read_lock = threading.Lock()
        self._readers = ThreadPoolExecutor(max_workers=2, thread_name_prefix="mailflow-read")
        self._thread = threading.Thread(target=self._run, name="mailflow-writer", daemon=True)
        self._thread.start()

    # -- writes ---------------------------------------------------------------------------

    async def write(self, fn: Callable[[Tx], T]) -> T:
        """Run ``fn`` in a transaction; return once it is durably committed."""
        if self._closed:
            raise StoreClosed("store is closed")
        loop = asyncio.get_running_loop()
        future: asyncio.Future[T] = loop.create_future()
        self._inbox.put(_Write(fn, loop, future))
        return await future

    def write_sync(self, fn: Callable[[Tx], T]) -> T:
        """The blocking form of ``write``, for setup code and tools outside the event loop."""
        if self._closed:
            raise StoreClosed("store is closed")
        item = _Write(fn, None, None, threading.Event())
        self._inbox.put(item)
        assert item.done is not None
        item.done.wait()
        if item.error is not None:
            raise item.error
        return item.result  # type: ignore[no-any-return]

    def _run(self) -> None:
        conn = self._writer
        while True:
            first = self._inbox.get()
            if first is None:
                break
            batch = [first]
            stop = False
            while len(batch) < self.MAX_BATCH:
                try:
                    nxt = self._inbox.get_nowait()
                except queue.Empty:
                    break
                if nxt is None:
                    stop = True
                    break
                batch.append(nxt)
            self._commit_batch(conn, batch)
            if stop:
                break
        conn.close()

    def _commit_batch(self, conn: sqlite3.Connection, batch: list[_Write]) -> None:
        facts: list[Fact] = []
        committed = False
        try:
            conn.execute("BEGIN IMMEDIATE")
            if not self._run_together(conn, batch, facts):
                # A write failed: undo the batch and run each write in a savepoint of its
                # own, so that the failure undoes only itself.
                conn.execute("ROLLBACK")
                facts.clear()
                conn.execute("BEGIN IMMEDIATE")
                self._run_apart(conn, batch, facts)
            conn.execute("COMMIT")
            committed = True
        except Exception as exc:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            facts = []
            for item in batch:
                item.error = item.error or _classified(exc)
        # Every committed batch is told, even one without facts: waiters on the lab's
        # changes (``mailflow.runtime.changes``) act on any commit.
        if committed and self.on_commit is not None:
            self._deliver_facts(batch, facts)
        self._finish(batch)

    def _run_together(self, conn: sqlite3.Connection, batch: list[_Write],
                      facts: list[Fact]) -> bool:
        """Run every write of the batch in the one transaction, with no savepoints; False,
        with the transaction to be undone, as soon as one fails. Every SQLite call gives
        up the GIL and must win it back from the event loop, so the common case, where
        nothing fails, makes as few of them as it can."""
        traces: list[TraceRow] = []
        for item in batch:
            tx = Tx(conn, self.clock.now(), time.time())
            try:
                item.result = item.fn(tx)
            except Exception:
                return False
            facts.extend(tx.facts)
            traces.extend(tx.traces)
        _insert_traces(conn, traces)
        return True

    def _run_apart(self, conn: sqlite3.Connection, batch: list[_Write],
                   facts: list[Fact]) -> None:
        for item in batch:
            tx = Tx(conn, self.clock.now(), time.time())
            conn.execute("SAVEPOINT w")
            try:
                item.result = item.fn(tx)
                tx.flush_traces()
                conn.execute("RELEASE w")
                facts.extend(tx.facts)
            except Exception as exc:  # one bad write must not undo its neighbours
                conn.execute("ROLLBACK TO w")
                conn.execute("RELEASE w")
                item.error = _classified(exc)

    def _deliver_facts(self, batch: list[_Write], facts: list[Fact]) -> None:
        assert self.on_commit is not None
        loop = next((item.loop for item in batch if item.loop is not None), None)
        if loop is not None and not loop.is_closed():
            loop.call_soon_threadsafe(self.on_commit, facts)
        else:
            self.on_commit(facts)

    @staticmethod
    def _finish(batch: list[_Write]) -> None:
        """Wake every caller of the batch: one hand-over per event loop, not one per write
        (each call_soon_threadsafe wakes the loop through its self-pipe)."""
        waiting: dict[asyncio.AbstractEventLoop, list[_Write]] = {}
        for item in batch:
            if item.done is not None:
                item.done.set()
            else:
                assert item.loop is not None
                waiting.setdefault(item.loop, []).append(item)
        for loop, items in waiting.items():
            if not loop.is_closed():
                loop.call_soon_threadsafe(_settle, items)


    # -- reads ----------------------------------------------------------------------------

    def read_sync(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Run ``fn`` on this thread's read connection, in one consistent snapshot."""
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            conn = connect(self.path, readonly=True)
            self._local.conn = conn
            with self._read_lock:
                self._read_conns.append(conn)
        conn.execute("BEGIN")
        try:
            return fn(conn)
        finally:
            conn.execute("COMMIT")

    async def read(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._readers, self.read_sync, fn)

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._inbox.put(None)
        self._thread.join()
        self._readers.shutdown(wait=True)
        with self._read_lock:
            for conn in self._read_conns:
                conn.close()
            self._read_conns.clear()


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
    """The simulated time a previous run of this data directory reached, or 0.

    Time never runs backwards, not even after kill -9: the last trace or event
    written bounds it from below when the periodic save is older.
    """
    if not path.exists():
        return 0.0
    with _offline(path) as conn:
        saved = float(meta.get(conn, "clock") or 0.0)
        for table in ("trace", "events"):
            last = conn.execute(f"SELECT sim_time FROM {table} ORDER BY id DESC LIMIT 1")
            saved = max([saved, *(row[0] for row in last)])
    return saved

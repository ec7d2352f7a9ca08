"""Durable group commit, shared by the store's backends (``stores.db``, ``stores.pg``).

In: callables that take a ``Tx``, from the event loop (``write``) or from a plain thread
(``write_sync``). Out: their results, once the transaction that ran them is committed.
One writer thread owns the only writing connection; it takes every write waiting in its
inbox, runs them all in one transaction, commits once and then wakes all their callers.
When one of them fails, the batch is undone and run again with each write in a savepoint
of its own, so one failing write never undoes its neighbours. A caller therefore never
hears "done" before its data is durable. A backend says how its connection begins,
commits and rolls back, and how it names its own errors (``Dialect``).
"""

from __future__ import annotations

import asyncio
import contextlib
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Generic, Protocol, TypeVar

from stores.backend import Fact
from stores.clock import Clock

T = TypeVar("T")
C = TypeVar("C")
C_contra = TypeVar("C_contra", contravariant=True)

TraceRow = tuple[str, str | None, str, str, str, float, float]

INSERT_TRACES = ("INSERT INTO trace(message, rcpt, server, stage, detail, sim_time, real_time)"
                 " VALUES (?,?,?,?,?,?,?)")
INSERT_EVENT = ("INSERT INTO events(source, event_id, level, category, server, text, sim_time,"
                " real_time) VALUES (?,?,?,?,?,?,?,?)")


class StoreClosed(RuntimeError):
    pass


@dataclass
class Tx:
    """What a write sees (``stores.backend.Tx``): the backend's statements inside an open
    transaction and the lab's time. The query modules of ``stores`` run their SQL on the Tx
    itself; ``execute`` and ``executemany`` are the backend's own, bound, so a statement
    costs no extra call."""

    execute: Callable[..., Any]
    executemany: Callable[..., Any]
    now: float
    real: float
    facts: list[Fact] = field(default_factory=list)
    # Trace rows wait here and are written in one statement for the whole batch (or the
    # write, ``flush_traces``): a delivery traces three stages, and nothing reads the trace
    # inside a write.
    traces: list[TraceRow] = field(default_factory=list)

    def note(self, kind: str, value: float = 1.0, **labels: str) -> None:
        self.facts.append(Fact(kind, labels, value))

    def trace(
        self, message: str, rcpt: str | None, server: str, stage: str, detail: str = ""
    ) -> None:
        self.traces.append((message, rcpt, server, stage, detail, self.now, self.real))

    def flush_traces(self) -> None:
        if self.traces:
            self.executemany(INSERT_TRACES, self.traces)
            self.traces.clear()

    def event(
        self, source: str, event_id: int, level: str, server: str, text: str, category: str = ""
    ) -> None:
        self.execute(INSERT_EVENT,
                     (source, event_id, level, category, server, text, self.now, self.real))
        self.note("event", server=server, source=source, event_id=str(event_id))


class Dialect(Protocol[C_contra]):
    """How one backend's writing connection runs a transaction."""

    def begin(self, conn: C_contra) -> None: ...

    def commit(self, conn: C_contra) -> None: ...

    def rollback(self, conn: C_contra) -> None: ...

    def savepoint(self, conn: C_contra) -> None: ...

    def release(self, conn: C_contra) -> None: ...

    def rollback_to(self, conn: C_contra) -> None: ...

    def tx(self, conn: C_contra, now: float, real: float) -> Tx: ...

    def classified(self, exc: Exception) -> Exception: ...

    def retryable(self, exc: Exception) -> bool: ...

    def close(self, conn: C_contra) -> None: ...


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


class GroupCommit(Generic[C]):
    """The writer thread of one store and its inbox."""

    MAX_BATCH = 512
    # A batch that lost a deadlock or a serialization check to another process is run
    # again (PostgreSQL only): nothing of it was committed.
    RETRIES = 3

    def __init__(self, conn: C, dialect: Dialect[C], clock: Clock,
                 on_commit: Callable[[list[Fact]], None] | None) -> None:
        self.clock = clock
        self.on_commit = on_commit
        self._conn = conn
        self._dialect = dialect
        self._inbox: queue.SimpleQueue[_Write | None] = queue.SimpleQueue()
        self._closed = False
        self._thread = threading.Thread(target=self._run, name="mailflow-writer", daemon=True)
        self._thread.start()

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

    def _stop_writer(self) -> None:
        """Let the writer finish what it holds, then close its connection."""
        if self._closed:
            return
        self._closed = True
        self._inbox.put(None)
        self._thread.join()

    def _run(self) -> None:
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
            self._commit_batch(batch)
            if stop:
                break
        self._dialect.close(self._conn)

    def _commit_batch(self, batch: list[_Write]) -> None:
        for attempt in range(self.RETRIES):
            facts: list[Fact] = []
            try:
                facts = self._run_batch(batch)
                committed = True
            except Exception as exc:
                self._undo()
                if self._dialect.retryable(exc) and attempt + 1 < self.RETRIES:
                    for item in batch:
                        item.result = item.error = None
                    continue
                committed = False
                for item in batch:
                    item.error = item.error or self._dialect.classified(exc)
            break
        # Every committed batch is told, even one without facts: waiters on the lab's
        # changes (``mailflow.runtime.changes``) act on any commit.
        if committed and self.on_commit is not None:
            self._deliver_facts(batch, facts)
        self._finish(batch)

    def _run_batch(self, batch: list[_Write]) -> list[Fact]:
        d, conn = self._dialect, self._conn
        facts: list[Fact] = []
        d.begin(conn)
        if not self._run_together(batch, facts):
            # A write failed: undo the batch and run each write in a savepoint of its
            # own, so that the failure undoes only itself.
            d.rollback(conn)
            facts.clear()
            d.begin(conn)
            self._run_apart(batch, facts)
        d.commit(conn)
        return facts

    def _undo(self) -> None:
        # Nothing may be open, or the connection may be gone: either way nothing is kept.
        with contextlib.suppress(Exception):
            self._dialect.rollback(self._conn)

    def _run_together(self, batch: list[_Write], facts: list[Fact]) -> bool:
        """Run every write of the batch in the one transaction, with no savepoints; False,
        with the transaction to be undone, as soon as one fails. Every database call gives
        up the GIL and must win it back from the event loop, so the common case, where
        nothing fails, makes as few of them as it can."""
        traces: list[TraceRow] = []
        d, conn = self._dialect, self._conn
        for item in batch:
            tx = d.tx(conn, self.clock.now(), time.time())
            try:
                item.result = item.fn(tx)
            except Exception as exc:
                if d.retryable(exc):
                    raise  # the whole batch is run again
                return False
            facts.extend(tx.facts)
            traces.extend(tx.traces)
        if traces:
            tx = d.tx(conn, 0.0, 0.0)
            tx.executemany(INSERT_TRACES, traces)
        return True

    def _run_apart(self, batch: list[_Write], facts: list[Fact]) -> None:
        d, conn = self._dialect, self._conn
        for item in batch:
            tx = d.tx(conn, self.clock.now(), time.time())
            d.savepoint(conn)
            try:
                item.result = item.fn(tx)
                tx.flush_traces()
                d.release(conn)
                facts.extend(tx.facts)
            except Exception as exc:  # one bad write must not undo its neighbours
                if d.retryable(exc):
                    raise
                d.rollback_to(conn)
                d.release(conn)
                item.error = d.classified(exc)

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

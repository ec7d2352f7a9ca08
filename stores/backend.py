"""What a storage backend offers: the handles writes and reads see, and the backend itself.

In: nothing (interfaces only). Out: ``Conn``, the DB-API-like connection the query
modules of ``stores/`` run their SQL on; ``Read``, the handle a read sees (a
connection inside one consistent snapshot); ``Tx``, the handle a write sees (the
lab's time, facts, traces and events, and itself a ``Conn`` for the query modules);
``Backend`` (write, write_sync, read, read_sync, close); ``Fact``, what a
committed write tells the lab (for metrics and wake-ups); and ``StoreError`` and
``StoreFull``, what a backend raises for its own failures. ``stores.db`` is the
SQLite backend. routing/ and mailflow/ only pass a ``Tx`` or a ``Read`` on to
functions of ``stores``; only ``stores`` calls ``execute``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

from stores.clock import Clock

T = TypeVar("T")


@dataclass
class Fact:
    """Something that happened inside a committed write, for metrics and wake-ups."""

    kind: str
    labels: dict[str, str]
    value: float = 1.0


class StoreError(Exception):
    """The store could not be opened, read or written: a file that is not a store, one this
    user may not write, a broken disk. The backend's own error is its ``__cause__``."""


class StoreFull(StoreError):
    """A write the disk had no room for: nothing was committed, and it may work later, so
    SMTP answers it 452 4.3.1 rather than 451 4.3.0."""


class Cursor(Protocol):
    """The result of one statement."""

    @property
    def rowcount(self) -> int: ...

    def fetchone(self) -> Any: ...

    def fetchall(self) -> list[Any]: ...

    def __iter__(self) -> Iterator[Any]: ...


class Conn(Protocol):
    """A connection: rows support access by column name and by index."""

    def execute(self, sql: str, parameters: Any = ..., /) -> Cursor: ...

    def executemany(self, sql: str, parameters: Any, /) -> Cursor: ...


# A read sees a connection in one snapshot, and nothing else.
Read = Conn


class Tx(Conn, Protocol):
    """What a write sees: the lab's time, and the facts, traces and events it records."""

    @property
    def now(self) -> float: ...

    @property
    def real(self) -> float: ...

    def note(self, kind: str, value: float = 1.0, **labels: str) -> None: ...

    def trace(self, message: str, rcpt: str | None, server: str, stage: str,
              detail: str = "") -> None: ...

    def event(self, source: str, event_id: int, level: str, server: str, text: str,
              category: str = "") -> None: ...


class Backend(Protocol):
    """A lab's store: durable writes (``fn`` runs in a transaction, stamped with the lab
    clock's time) and snapshot reads."""

    @property
    def clock(self) -> Clock: ...

    async def write(self, fn: Callable[[Tx], T]) -> T: ...

    def write_sync(self, fn: Callable[[Tx], T]) -> T: ...

    async def read(self, fn: Callable[[Read], T]) -> T: ...

    def read_sync(self, fn: Callable[[Read], T]) -> T: ...

    def close(self) -> None: ...

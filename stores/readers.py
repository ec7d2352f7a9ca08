"""The read connections of a store, shared by its backends (``stores.db``, ``stores.pg``).

In: how to open and close one read connection, and reads to run. Out: each reading thread's
own connection, opened at its first read and kept; reads from the event loop run on a small
pool of such threads; ``close`` closes every connection it opened. How a read begins and
ends its snapshot is the backend's.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Generic, TypeVar

C = TypeVar("C")
T = TypeVar("T")

# Threads (so connections) that serve reads from the event loop.
READ_THREADS = 2


class Readers(Generic[C]):
    def __init__(self, open_conn: Callable[[], C], close_conn: Callable[[C], None]) -> None:
        self._open = open_conn
        self._close = close_conn
        self._local = threading.local()
        self._conns: list[C] = []
        self._lock = threading.Lock()
        self._pool = ThreadPoolExecutor(max_workers=READ_THREADS,
                                        thread_name_prefix="mailflow-read")

    def conn(self) -> C:
        """This thread's read connection."""
        conn: C | None = getattr(self._local, "conn", None)
        if conn is None:
            conn = self._open()
            self._local.conn = conn
            with self._lock:
                self._conns.append(conn)
        return conn

    async def run(self, read_sync: Callable[[Callable[[C], T]], T], fn: Callable[[C], T]) -> T:
        """``read_sync(fn)`` on one of the pool's threads."""
        return await asyncio.get_running_loop().run_in_executor(self._pool, read_sync, fn)

    def close(self) -> None:
        self._pool.shutdown(wait=True)
        with self._lock:
            for conn in self._conns:
                self._close(conn)
            self._conns.clear()

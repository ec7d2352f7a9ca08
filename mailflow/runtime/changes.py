"""Committed changes as something to wait on, so that nothing in the lab polls the store.

In: ``bump()`` from the lab, once per committed write batch of the store.
Out: ``wait(after, timeout)`` for coroutines (the wait route, live pages) that
must act on the next commit: it returns the new generation as soon as one
exists, or the current one when the timeout passes first. ``close()`` (the lab stopping)
wakes every waiter for good: after it, ``closed`` is true and ``wait`` returns at once.
"""

from __future__ import annotations

import asyncio
import contextlib


class Changes:
    """A counter of committed write batches. Use it on the lab's event loop only."""

    def __init__(self) -> None:
        self.generation = 0
        self.closed = False
        # Coroutines in ``wait`` now (what a test of a waiter can look for).
        self.waiting = 0
        self._next = asyncio.Event()

    def bump(self) -> None:
        self.generation += 1
        # Wake everyone waiting on this generation; later waiters get a fresh event.
        self._next.set()
        self._next = asyncio.Event()

    def close(self) -> None:
        self.closed = True
        self._next.set()

    async def wait(self, after: int, timeout: float) -> int:
        """The generation, once it is past ``after`` or ``timeout`` seconds have passed."""
        if self.generation > after or self.closed:
            return self.generation
        self.waiting += 1
        try:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._next.wait(), timeout)
        finally:
            self.waiting -= 1
        return self.generation

"""What the benchmark reads from PostgreSQL while labs run on it (bench/scaleout.py).

In: the URL of the lab's database. Out: ``LockWaits``, a sampler of how many of the
database's backends wait for an advisory lock (``pg_stat_activity``): the labs' write
batches are taken one at a time across processes (``stores.pg.WRITE_LOCK``; the other
advisory locks of a lab are only tried, never waited for), so that is how many processes
queue for the lab's one writer slot.
"""

from __future__ import annotations

import statistics
import threading

import psycopg

INTERVAL = 0.1  # seconds between two looks at pg_stat_activity

WAITING = ("SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
           " AND wait_event_type = 'Lock' AND wait_event = 'advisory'")


class LockWaits(threading.Thread):
    """Samples the backends waiting for an advisory lock until ``stop``; ``mean`` is their
    average number, ``busy`` the share of samples with at least one waiting."""

    def __init__(self, url: str) -> None:
        super().__init__(daemon=True)
        self.url = url
        self.samples: list[int] = []
        self._done = threading.Event()

    def run(self) -> None:
        with psycopg.connect(self.url, autocommit=True) as conn:
            while not self._done.wait(INTERVAL):
                row = conn.execute(WAITING).fetchone()
                self.samples.append(int(row[0]) if row else 0)

    def stop(self) -> dict[str, float | None]:
        self._done.set()
        self.join(timeout=10)
        if not self.samples:
            return {"mean": None, "busy": None}
        return {"mean": statistics.mean(self.samples),
                "busy": sum(1 for s in self.samples if s) / len(self.samples)}

"""Bulk work on a stopped lab's store, for the benchmark (bench/, issue 8).

In: the path of a lab's ``mailflow.db`` (the lab stopped for ``amplify_queue``), or for
``delivered_times`` that or the URL of its PostgreSQL database (any time, read only). Out:
the number of messages queued after copying the parked ones, or the real times of the
deliveries the trace recorded.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

from stores.db import connect
from stores.queue_ids import DEFERRED

# What one parked message is made of: its message row, its pairs and its trace rows.
_COPIED = (("messages", "id"), ("pairs", "message"), ("trace", "message"))


def amplify_queue(db: Path, target: int) -> int:
    """Copy the messages parked in ``deferred`` (their messages, pairs and trace rows), each
    copy under a new message id, until about ``target`` are queued. The lab must be stopped:
    this writes past the store's writer. Returns the number of pairs then queued."""
    conn = connect(db)
    try:
        base = [r[0] for r in conn.execute(
            "SELECT DISTINCT message FROM pairs WHERE queue=?", (DEFERRED,))]
        if not base:
            raise RuntimeError("nothing parked to copy")
        conn.execute("CREATE TEMP TABLE base(id TEXT PRIMARY KEY)")
        conn.executemany("INSERT INTO base VALUES (?)", ((m,) for m in base))
        rounds = max(0, -(-target // len(base)) - 1)
        for rnd in range(1, rounds + 1):
            conn.execute("BEGIN")
            for table, key in _COPIED:
                _copy_round(conn, table, key, rnd)
            conn.execute("COMMIT")
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        return int(conn.execute(
            "SELECT COUNT(*) FROM pairs WHERE queue=?", (DEFERRED,)).fetchone()[0])
    finally:
        conn.close()


def _copy_round(conn: sqlite3.Connection, table: str, key: str, rnd: int) -> None:
    """One copy of ``table``'s rows of the base messages, ``key`` renamed ``x<rnd>...`` (a
    message id keeps its length); the integer row ids of pairs and trace are new ones."""
    names = [r[1] for r in conn.execute(f"PRAGMA table_info({table})")
             if not (r[1] == "id" and key != "id")]
    exprs = [f"'x' || printf('%04x', {rnd}) || substr({key}, 6)" if c == key else c
             for c in names]
    conn.execute(f"INSERT INTO {table}({','.join(names)}) SELECT {','.join(exprs)}"
                 f" FROM {table} WHERE {key} IN (SELECT id FROM base)")


_DELIVERED = "SELECT real_time FROM trace WHERE stage='delivered' AND server=?"


def delivered_times(db: Path | str, server: str) -> list[float] | None:
    """The real (wall-clock) time of every delivery on ``server`` in the lab's trace, read
    only; None when the store cannot be read or has no trace."""
    if isinstance(db, str):
        return _pg_delivered_times(db, server)
    try:
        conn = connect(db, readonly=True)
        try:
            rows = conn.execute(_DELIVERED, (server,)).fetchall()
        finally:
            conn.close()
    except sqlite3.Error:
        return None
    return [float(r[0]) for r in rows]


def _pg_delivered_times(url: str, server: str) -> list[float] | None:
    import psycopg  # loaded only for a PostgreSQL store

    from stores import pg
    from stores.backend import StoreError

    try:
        conn = pg.PgConn(url)
        try:
            rows = conn.execute(_DELIVERED, (server,)).fetchall()
        finally:
            conn.close()
    except (StoreError, psycopg.Error):
        return None
    return [float(r[0]) for r in rows]

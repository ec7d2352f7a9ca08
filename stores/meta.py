"""The store's key/value notes about itself: the scenario it was seeded from, the clock.

In: a key (and a value to keep). Out: the value kept, or None.
"""

from __future__ import annotations

from stores.backend import Conn, Tx


def get(conn: Conn, key: str) -> str | None:
    row = conn.execute("SELECT value FROM meta WHERE key=?", (key,)).fetchone()
    return None if row is None else str(row[0])


def put(conn: Conn, key: str, value: str) -> None:
    conn.execute(
        "INSERT INTO meta(key, value) VALUES (?, ?)"
        " ON CONFLICT(key) DO UPDATE SET value=excluded.value",
        (key, value),
    )


def save_clock(tx: Tx) -> None:
    """Keep the simulated time the lab has reached, for its next start."""
    put(tx, "clock", repr(tx.now))

"""The store's key/value notes about itself: the scenario it was seeded from, the clock,
the secret that signs hop tokens.

In: a key (and a value to keep). Out: the value kept, or None.
"""

from __future__ import annotations

import secrets

from stores.backend import Conn, Tx

# The lab's own secret for the MAC of a hop token (``routing.hop``). Kept in the store, not in
# a file of its own: it lives and dies with the mail it protects, and survives restarts.
HOP_SECRET = "hop_secret"


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


def hop_secret(tx: Tx) -> bytes:
    """The lab's hop-token secret (32 random bytes), made on the first call and kept."""
    value = get(tx, HOP_SECRET)
    if value is None:
        value = secrets.token_bytes(32).hex()
        put(tx, HOP_SECRET, value)
    return bytes.fromhex(value)


def reached(conn: Conn) -> float:
    """The simulated time the lab has reached, for its next start. Time never runs
    backwards, not even after kill -9: the last trace or event written bounds it from
    below when the periodic save is older."""
    saved = float(get(conn, "clock") or 0.0)
    for table in ("trace", "events"):
        last = conn.execute(f"SELECT sim_time FROM {table} ORDER BY id DESC LIMIT 1")
        saved = max([saved, *(row[0] for row in last)])
    return saved

"""Mailbox stores: which server's store holds a mailbox, its PR_IN_TRANSIT flag and its items.

In: store-level operations from the store driver and the move engines.
Out: rows in ``store_mailboxes`` (one per mailbox per store it exists in) and
``items`` (the mailbox contents, each delivered pair at most once).
During a move a mailbox exists in two stores, source and target, both in transit.
"""

from __future__ import annotations

from stores.backend import Conn

INBOX = "Inbox"


def seed(
    conn: Conn, server: str, mailbox: str, items: int, size: int, now: float
) -> None:
    conn.execute("INSERT INTO store_mailboxes(server, mailbox) VALUES (?, ?)", (server, mailbox))
    conn.executemany(
        "INSERT INTO items(server, mailbox, folder, size, delivered_at) VALUES (?,?,?,?,?)",
        [(server, mailbox, INBOX, size, now)] * items,
    )


def in_transit(conn: Conn, server: str, mailbox: str) -> bool | None:
    """PR_IN_TRANSIT of ``mailbox`` in ``server``'s store; None when the store lacks it."""
    row = conn.execute(
        "SELECT in_transit FROM store_mailboxes WHERE server=? AND mailbox=?", (server, mailbox)
    ).fetchone()
    return None if row is None else bool(row[0])


def set_in_transit(conn: Conn, server: str, mailbox: str, flag: bool) -> None:
    conn.execute(
        "UPDATE store_mailboxes SET in_transit=? WHERE server=? AND mailbox=?",
        (int(flag), server, mailbox),
    )


def create(conn: Conn, server: str, mailbox: str, *, in_transit: bool) -> None:
    conn.execute(
        "INSERT INTO store_mailboxes(server, mailbox, in_transit) VALUES (?,?,?)",
        (server, mailbox, int(in_transit)),
    )


def remove(conn: Conn, server: str, mailbox: str) -> None:
    conn.execute("DELETE FROM store_mailboxes WHERE server=? AND mailbox=?", (server, mailbox))


def transfer_items(conn: Conn, mailbox: str, source: str, target: str) -> int:
    """Carry every item of ``mailbox`` from the source store to the target store."""
    cur = conn.execute(
        "UPDATE items SET server=? WHERE mailbox=? AND server=?", (target, mailbox, source)
    )
    return cur.rowcount


def size(conn: Conn, server: str, mailbox: str) -> tuple[int, int]:
    """(item count, total bytes) of ``mailbox`` in ``server``'s store."""
    row = conn.execute(
        "SELECT COUNT(*), COALESCE(SUM(size), 0) FROM items WHERE server=? AND mailbox=?",
        (server, mailbox),
    ).fetchone()
    return int(row[0]), int(row[1])


def add_item(
    conn: Conn, server: str, mailbox: str, pair: int, message: str, size: int,
    now: float,
) -> None:
    conn.execute(
        "INSERT INTO items(server, mailbox, folder, pair, message, size, delivered_at)"
        " VALUES (?,?,?,?,?,?,?)",
        (server, mailbox, INBOX, pair, message, size, now),
    )
